"""The advisor in Python: ``run_advisor(...)`` and ``load_plan(run_dir)`` give a ``Plan``, a table in Jupyter
and a pandas DataFrame. What is stored on disk (``plan.json``) is unchanged: ``Plan.data`` is that dict."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import UnfreezeError
from .display import frame_html, images_html

PLAN_FILE = "plan.json"
CURVES_FILE = "curves.png"
# the columns of Plan.to_frame(), one row per configuration the advisor considered, best first
PLAN_COLUMNS = (
    "configuration",
    "strategy",
    "status",
    "recommended",
    "largest_size",
    "seeds",
    "measured",
    "predicted",
    "low",
    "high",
    "fit_seconds",
    "learning_rate",
    "note",
)
NUMBER_COLUMNS = ("measured", "predicted", "low", "high", "fit_seconds", "learning_rate")


@dataclass(frozen=True)
class Plan(Mapping[str, Any]):
    """The advisor's answer: ``data`` is ``plan.json`` as a dict (a Plan reads like one: ``plan["recommendation"]``),
    ``run_dir`` the run folder it came from (None for a plan read from a lone file). ``to_frame()`` is one row
    per configuration, best first: its status, the validation score measured at its largest size, the score
    predicted at the full size with its interval (empty where the curve was not trusted: ``note`` says why),
    the fit time projected at the full size, and whether it is the recommendation."""

    data: dict
    run_dir: Path | None = None

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    @property
    def recommendation(self) -> dict | None:
        return self.data.get("recommendation")

    @property
    def metric(self) -> str:
        return self.data.get("score_metric") or "accuracy"  # plans written before score_metric ranked by accuracy

    def to_frame(self) -> pd.DataFrame:
        full = str(self.data["full_size"])
        chosen = (self.recommendation or {}).get("configuration")
        rows = []
        for entry in self.data.get("plan", []):
            sizes = entry.get("sizes") or []
            predicted = (entry.get("predicted") or {}).get(full) or {}
            rows.append(
                {
                    "configuration": entry["configuration"],
                    "strategy": entry["strategy"],
                    "status": entry["status"],
                    "recommended": entry["configuration"] == chosen,
                    "largest_size": max(sizes) if sizes else None,
                    "seeds": entry.get("seeds"),
                    "measured": entry["measured"][str(max(sizes))] if sizes else None,
                    "predicted": predicted.get("score"),
                    "low": predicted.get("low"),
                    "high": predicted.get("high"),
                    "fit_seconds": (entry.get("cost") or {}).get("fit_seconds"),
                    "learning_rate": entry.get("rate_at_largest"),
                    "note": entry.get("not_predicted") or entry.get("error") or "",
                }
            )
        frame = pd.DataFrame(rows, columns=list(PLAN_COLUMNS))
        # a column no configuration has a value in stays a float column (NaN), not one of Nones
        for column in NUMBER_COLUMNS:
            frame[column] = pd.to_numeric(frame[column]).astype(float)
        for column in ("largest_size", "seeds"):  # counts, empty for a configuration that never ran
            frame[column] = frame[column].astype("Int64")
        return frame

    def caption(self) -> str:
        rec = self.recommendation
        head = f"advisor plan for {self.data.get('data')} with {self.data.get('model')}"
        if rec is None:
            return f"{head}: no recommendation (no configuration finished; give a larger budget)"
        return (
            f"{head}: train {rec['configuration']} (validation {self.metric} {rec['score']:.3f} "
            f"at n={rec['size']:,}; full size {self.data['full_size']:,})"
        )

    def _repr_html_(self) -> str:
        curves = self.run_dir / CURVES_FILE if self.run_dir is not None else None
        return frame_html(self.to_frame(), self.caption()) + images_html([curves], "learning curves")

    def __repr__(self) -> str:
        rec = self.recommendation
        return f"Plan(recommendation={rec['configuration'] if rec else None!r}, run_dir={self.run_dir!r})"


def load_plan(path: str | Path) -> Plan:
    """The plan of an advisor run: its run folder (``unfreeze advise -o``) or a plan file (``--json-out``)."""
    path = Path(path)
    file = path / PLAN_FILE if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnfreezeError(
            f"{file} does not exist: give the folder `unfreeze advise -o` wrote, after the advisor finished, "
            "or the file its --json-out wrote."
        ) from None
    except (ValueError, UnicodeDecodeError) as err:
        raise UnfreezeError(f"{file} is not a plan the advisor wrote ({err}).") from None
    if not isinstance(data, dict) or "plan" not in data or "full_size" not in data:
        raise UnfreezeError(f"{file} is not a plan the advisor wrote (it has no 'plan' and 'full_size').")
    return Plan(data, path if path.is_dir() else None)


def run_advisor(
    data: str,
    output: str | Path,
    *,
    model: str = "minilm-l6",
    budget: float | str = "15m",
    device: str | None = None,
    progress: bool = True,
    **settings: Any,
) -> Plan:
    """Run (or resume) the advisor as ``unfreeze advise DATA -o OUTPUT`` does and return its plan.

    ``budget``: seconds, or a duration such as ``"15m"``; ``settings``: the rest of ``AdviseSpec``'s
    fields, named as the command's options are (``strategies=["features", "freeze"]``, ``seeds=[0, 1]``,
    ``min_size=64``, ``max_size=512``, ``epochs=2``, ...). The run folder gets what the command writes
    (results, plan.json, curves.png, report.html)."""
    from ..advise.halving import run_halving
    from ..advise.plan import make_plan
    from ..advise.render import write_outputs
    from ..advise.spec import AdviseSpec
    from ..cli.advise import parse_budget
    from ..machine.cores import use_threads
    from ..machine.devices import resolve_device
    from ..storage.outputs import check_output

    clock_start = time.monotonic()
    seconds = parse_budget(budget) if isinstance(budget, str) else float(budget)
    known = {f.name for f in fields(AdviseSpec) if f.init} - {"data", "model", "budget"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise UnfreezeError(
            f"run_advisor() takes no setting {', '.join(map(repr, unknown))}. Settings: {', '.join(sorted(known))}."
        )
    spec = AdviseSpec(data=data, model=model, budget=seconds, **settings)
    spec.check()
    spec.sweep_spec()  # strategies and their grid: one error now rather than after the pilot started
    output = Path(output)
    check_output(output, "run", inputs=[p for p in (data, spec.test) if p], run_kind="advise")
    device = None if device is None else str(resolve_device(device))
    with use_threads(spec.threads) as cores:
        run = run_halving(spec, output, clock_start, progress=progress, device=device, cores=cores.as_dict())
    plan = make_plan(run)
    write_outputs(plan, run)
    return load_plan(output)  # the plan as stored: the same dict a later load_plan gives
