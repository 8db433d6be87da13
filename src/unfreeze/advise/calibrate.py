"""Calibration: one training step and one validation batch of each configuration, timed before the pilot.

Each trained configuration fits two epochs of one batch at its strategy's default rate on a
seeded sample of the pool, validating on one more batch after each epoch; the second epoch
is the steady state (the first pays one-time set-up). A configuration that leaves the
weights alone embeds two batches. What every cell then costs follows from these seconds per
text (``pilot.cell_seconds``), scaled by the padded tokens per text of a cell's batches over
those of the timed ones (``padding``: the pool is tokenised once, its batches simulated). A few
seconds in all for a small model; they count against the budget like everything else.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from ..data import TextDataset, sample
from ..errors import UnfreezeError
from ..machine.deadline import DeadlineReached
from ..machine.deadline import deadline as time_limit
from ..sweep.grid import SweepSpec
from .cost import cell_seconds, human_seconds
from .padding import grouped_padded, padding_tables, pool_lengths, sorted_padded
from .pilot import SAFETY, PilotPlan, StepCosts, calibrated_seconds, plan_pilot
from .pilot import cell_seconds as calibrated_cell
from .rungs import Configuration, reserve_seconds
from .spec import AdviseSpec


def calibrate(sweep: SweepSpec, data, configs: list, device: str | None, seed: int) -> dict[str, StepCosts]:
    """``StepCosts`` of every configuration in ``configs`` (``halving.Configuration``), measured here and now."""
    from ..features.embed import EMBEDDING_POOLS, embed
    from ..models.pooling import parse_layers, resolve_pooling
    from ..sweep.plan import cell_classifier, inference_backbone, prediction_seconds_per_text
    from ..training.prefix import PREFIX_POOLS

    batch, texts = calibration_texts(sweep, data, seed)
    train, validation = texts.subset(list(range(batch))), texts.subset(list(range(batch, len(texts))))
    tokens, padding = padding_of(sweep, data, texts, batch, device, seed)
    costs: dict[str, StepCosts] = {}
    warmed = False
    grouped = sweep.groups_by_length()
    with EMBEDDING_POOLS.suspended(), PREFIX_POOLS.suspended():
        for config in configs:
            cell = config.cell(batch, seed)
            strategy = cell.make_strategy()
            if config.cheap:
                # the model's forward pass per text (warmed first: the first pass pays one-time set-up), then
                # a fit, whose time beyond embedding its sample is the head's
                backbone = inference_backbone(sweep, device)
                layers = list(parse_layers(sweep.layers, backbone.num_blocks, "advise"))
                pooling = resolve_pooling(sweep.pooling, backbone.is_decoder, "advise")
                embed(
                    backbone,
                    train.inputs[:2],
                    layers,
                    pooling,
                    sweep.max_length,
                    sweep.batch_size,
                    use_cache=False,
                    progress=False,
                )
                started = time.perf_counter()
                embed(
                    backbone,
                    texts.inputs,
                    layers,
                    pooling,
                    sweep.max_length,
                    sweep.batch_size,
                    use_cache=False,
                    progress=False,
                )
                forward = (time.perf_counter() - started) / len(texts)
                clf = cell_classifier(sweep, cell, device, use_cache=False)
                clf.fit(train.inputs, train.labels)
                # the head's fit (a logistic regression) is mostly set-up at these sizes: counted as fixed (beyond
                # embedding its sample, whose batch pads as it does)
                embedding = forward * batch * tokens["fit_embed_tokens"] / (tokens["embed_tokens"] or 1.0)
                costs[config.label] = with_tokens(
                    StepCosts(config.label, True, forward=forward, fixed=max(clf.fit_seconds_ - embedding, 0.0)),
                    tokens,
                    padding,
                )
                continue
            one = dataclasses.replace(
                sweep, learning_rate=None, epochs=2, max_steps=None, patience=None, validation_size=0
            )
            if not warmed:  # the first training in a process pays one-time set-up (imports, allocator): not a cost
                untimed(dataclasses.replace(one, epochs=1), cell, device).fit(train.inputs, train.labels)
                warmed = True
            clf = untimed(one, cell, device)
            clf.fit(train.inputs, train.labels, validation=(validation.inputs, validation.labels))
            record = clf.fit_record_
            measured = step_costs(
                config.label,
                record,
                clf.fit_seconds_,
                batch,
                len(validation),
                prediction_seconds_per_text(clf, validation.inputs),
                sweep.epochs or strategy.epochs_for(sweep.searches_rates),
                len(strategy.learning_rate_grid())
                if sweep.searches_rates and "learning_rate" in strategy.training_settings
                else 1,
            )
            costs[config.label] = with_tokens(measured, tokens, padding, strategy.length_grouped and grouped)
    return costs


def calibration_texts(sweep: SweepSpec, data, seed: int) -> tuple[int, TextDataset]:
    """The texts calibration trains on (the first ``batch``) and validates on (the rest): a seeded sample."""
    batch = max(2, min(sweep.batch_size, len(data.train_pool) // 2))
    return batch, sample(data.train_pool, n_total=min(2 * batch, len(data.train_pool)), seed=seed)


def padding_of(sweep: SweepSpec, data, texts, batch: int, device: str | None, seed: int) -> tuple[dict, dict]:
    """The padded tokens per text of the batches calibration times (``timed_tokens``) and the padding of a cell's
    batches, simulated from the pool's token lengths (``padding.padding_tables``): the pool is tokenised once."""
    from ..models.loaded import shared_backbone

    tokenizer = shared_backbone(sweep.model, device)
    lengths = tokenizer.encode(list(texts.inputs), sweep.max_length).lengths
    pool = pool_lengths(tokenizer, data.train_pool.inputs, sweep.max_length, seed)
    return timed_tokens(lengths, batch, sweep.batch_size, seed), padding_tables(pool, sweep.batch_size)


def with_tokens(costs: StepCosts, tokens: dict[str, float], padding: dict, length_grouped: bool = True) -> StepCosts:
    """``costs`` with the padded tokens per text of the batches that timed them, and the pool's padding.
    ``length_grouped``: whether the strategy trains on batches of similar lengths (``Strategy.length_grouped`` and
    the resolved ``group_by_length``);
    a loop of random batches pads as the timed batch did: its steps are not rescaled."""
    if costs.cheap:  # it embedded every calibration text, longest first
        return dataclasses.replace(costs, forward_tokens=tokens["embed_tokens"], padding=padding)
    return dataclasses.replace(
        costs,
        train_tokens=tokens["train_tokens"] if length_grouped else 0.0,
        validate_tokens=tokens["validate_tokens"],
        prefix_tokens=tokens["prefix_tokens"],
        forward_tokens=tokens["forward_tokens"],
        padding=padding,
    )


def timed_tokens(lengths: list[int], batch: int, batch_size: int, seed: int) -> dict[str, float]:
    """Padded tokens per text of the batches calibration times, from the token ``lengths`` of its texts (the
    first ``batch`` train, the rest validate): the training steps (length-grouped batches of ``batch_size``), the
    validation (longest first, twice the batch), the frozen prefix of both and the prediction of the validation
    texts (longest first); a cheap configuration embeds them all, its fit the training texts."""
    train, validation = lengths[:batch], lengths[batch:]

    def per_text(padded: float, texts: int) -> float:
        return padded / texts if texts else 0.0

    rng = np.random.default_rng(seed)
    return {
        "train_tokens": per_text(grouped_padded(train, batch_size, rng), len(train)),
        "validate_tokens": per_text(sorted_padded(validation, 2 * batch_size), len(validation)),
        "prefix_tokens": per_text(
            sorted_padded(train, batch_size) + sorted_padded(validation, batch_size), len(lengths)
        ),
        "forward_tokens": per_text(sorted_padded(validation, batch_size), len(validation)),
        "embed_tokens": per_text(sorted_padded(lengths, batch_size), len(lengths)),
        "fit_embed_tokens": per_text(sorted_padded(train, batch_size), len(train)),
    }


def untimed(spec: SweepSpec, cell, device: str | None):
    """A cell's classifier as the pilot's cells train (the frozen prefix cached in memory), without the embedding
    cache on disk: calibration must run the model, not read earlier results."""
    from ..sweep.plan import cell_classifier

    return cell_classifier(spec, cell, device, use_cache=True).set_params(cache=False)


def step_costs(
    label: str,
    record: dict,
    fit_seconds: float,
    n: int,
    validation: int,
    forward: float,
    epochs: int | None,
    rates: int,
) -> StepCosts:
    """A trained configuration's costs per text from a calibration fit of ``n`` examples, ``validation`` texts.

    The steady state is the last epoch: its seconds less its share of the validation are the
    steps; a loop that records no split (its own training) counts its whole fit as steps."""
    runs = max(int(record.get("epochs_run") or 1), 1)
    validate_total = float(record.get("validation_seconds") or 0.0)
    scored = int(record.get("validation_texts") or 0)
    validate = validate_total / scored if scored else forward
    epoch_seconds = record.get("epoch_seconds") or []
    prefix_total = float(record.get("prefix_seconds") or 0.0)
    if epoch_seconds and scored:
        last_steps = max(float(epoch_seconds[-1]) - validate_total / runs, 0.0)
        train = last_steps / n
    else:
        train = max(fit_seconds - prefix_total, 0.0) / (n * runs)
    steps_total = float(record.get("step_seconds") or 0.0) - prefix_total
    fixed = max(fit_seconds - prefix_total - max(steps_total, train * n * runs) - validate_total, 0.0)
    return StepCosts(
        label,
        False,
        train=train,
        validate=validate,
        prefix=prefix_total / (n + validation),
        forward=forward,
        fixed=fixed,
        epochs=int(epochs or runs),
        rates=rates,
    )


def make_pilot(
    spec: AdviseSpec,
    sweep: SweepSpec,
    data,
    configs: list[Configuration],
    device: str | None,
    ladder: list[int],
    held: int,
    clock_start: float,
    smaller: list[int],
    floor: int,
) -> tuple[PilotPlan, dict[str, StepCosts]]:
    """Calibrate, then plan the pilot in what the budget leaves; refuse a budget that cannot run even the cheap
    configurations at the smallest size (one line, nothing written)."""
    try:
        with time_limit(clock_start + spec.budget):
            costs = calibrate(sweep, data, configs, device, spec.seeds[0])
    except DeadlineReached:
        costs = {}
    room = spec.budget - reserve_seconds(spec.budget) - (time.monotonic() - clock_start)
    cheap = [c.label for c in configs if c.cheap]
    first = min(smaller) if smaller else ladder[0]
    baseline = (
        sum(len(spec.seeds) * calibrated_cell(costs[label], first, held, False) for label in cheap if label in costs)
        * SAFETY
    )
    elapsed = time.monotonic() - clock_start
    if not costs or room <= 0:
        raise UnfreezeError(
            f"A budget of {human_seconds(spec.budget)} cannot run even the features baseline: "
            f"loading the model and timing one step of each configuration took "
            f"{human_seconds(elapsed)}. Give --budget {math.ceil(max(elapsed, 20) * 3 / 60)}m or more."
        )
    if cheap and baseline > room:
        needed = elapsed + baseline + reserve_seconds(spec.budget)
        raise UnfreezeError(
            f"A budget of {human_seconds(spec.budget)} cannot run even the features baseline at the "
            f"smallest size ({first} examples x {len(spec.seeds)} seeds): loading and timing took "
            f"{human_seconds(elapsed)} and the baseline needs about {human_seconds(baseline)} more. "
            f"Give --budget {math.ceil(needed * 1.5 / 60)}m or more."
        )
    pilot = plan_pilot(
        costs,
        [c.label for c in configs],
        ladder,
        list(spec.seeds),
        held,
        room,
        spec.eta,
        spec.finalists,
        spec.first_rung_rate,
        smaller,
        spec.growth,
        floor,
    )
    return pilot, costs


def calibration_ratio(costs: dict[str, StepCosts], rows: list[dict]) -> dict:
    """How much slower than its calibration the machine ran the cells: their seconds over the seconds the
    calibration gives them (with the epochs they ran). Above 1: slower (other work, a throttled CPU)."""
    measured = expected = 0.0
    for r in rows:
        c = costs.get(r["cell"]["label"])
        # trained cells: a cheap cell's seconds depend on what the embedding pool already holds
        projected = calibrated_seconds(c, r) if c is not None and not c.cheap else None
        if projected:
            measured += cell_seconds(r)
            expected += projected
    return {
        "cell_seconds": measured,
        "calibrated_seconds": expected,
        "slowdown": measured / expected if expected > 0 else None,
    }


__all__ = [
    "calibrate",
    "calibration_ratio",
    "calibration_texts",
    "make_pilot",
    "padding_of",
    "step_costs",
    "timed_tokens",
    "untimed",
    "with_tokens",
]
