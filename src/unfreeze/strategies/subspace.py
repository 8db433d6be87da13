"""``subspace``: train only a d-dimensional vector theta; every projected weight = pretrained + P·theta.

Intrinsic dimension: Li et al. 2018, "Measuring the intrinsic dimension of objective
landscapes"; Aghajanyan et al. 2020, "Intrinsic dimensionality explains the effectiveness
of language model fine-tuning" (d90: the smallest d that reaches 90% of full fine-tuning's
score; ``unfreeze intrinsic-dim`` measures it). P is a fixed random D x d projection drawn
from a seed (Fastfood by default, O(D log d) per step, never a D x d matrix; dense for tiny
models); with ``said`` each projected tensor also learns a scale (SAID, Aghajanyan et al.'s
structure-aware variant): theta = [theta_d, lambda_1..lambda_m]. The math is in
``unfreeze.training.projection``.

What is projected (``projected``): ``"blocks"`` (the default) is every weight of the
attention blocks (attention, MLP, their norms and biases) and the final norm where the
family has one; the embeddings stay as pretrained. ``"body"`` adds the embedding side
(token, position and type embeddings and their norm), as Aghajanyan et al. did: for MiniLM
the word embeddings are half the weights, so P·theta, the step time and the memory double
for a part that matters least to a classifier. The pooler is never projected (the head
does not read it). The linear head trains normally, at ``head_learning_rate``.

The pretrained model is recovered exactly at theta = 0 (W0 + 0). A bundle stores theta,
SAID's scales, the head, and the projection's kind and seed: loading regenerates P from
the seed and checks it against the digest saved with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ..errors import UnfreezeError, invalid_parameter
from ..inference.predictors import NetworkPredictor, PredictorState, Tensors, rebuilt_network, register_predictor
from ..params import check_int, int_at_least, is_bool, one_of, setting
from .base import FitContext, Strategy, TunedStrategy

if TYPE_CHECKING:
    from torch import nn

    from ..models.backbone import Backbone
    from ..training import TextClassificationModel
    from ..training.projection import Subspace as SubspaceModule

PROJECTED = ("blocks", "body")


def projected_parameters(backbone: Backbone, projected: str) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) of every weight the subspace moves, in the model's own order."""
    embedding_side, blocks, final, _pooler = backbone.parameter_groups()
    chosen = {id(p) for block in blocks for p in block} | {id(p) for p in final}
    if projected == "body":
        chosen |= {id(p) for p in embedding_side}
    return [(name, p) for name, p in backbone.model.named_parameters() if id(p) in chosen]


def projection_seed(classifier_seed: int, projection_seed: int | None) -> int:
    """The seed P is drawn from: the strategy's own, or the classifier's (P's stream is kept apart from
    the head's and the training's by ``projection.projection_rng``)."""
    return int(classifier_seed if projection_seed is None else projection_seed)


# Adam moves every coordinate of theta by about the learning rate per step, and each projected
# tensor's block of P has unit-norm, nearly orthogonal columns: a step moves each tensor by
# about lr * sqrt(d). A rate of LR_SCALE / sqrt(d) keeps that step the same for every d.
# Measured on MiniLM (bench/subspace.py, README): a fixed 1e-2 was right at d = 1,000
# (a step of 0.3) and diverged at d = 10,000 (a step of 1) on movie-snippets.
LR_SCALE = 0.3


class _LearningRateOfD:
    """``default_learning_rate`` of a subspace object: LR_SCALE / sqrt(d); on the class, the value at the default d."""

    def __get__(self, obj: Subspace | None, owner: type) -> float:
        d = obj.d if obj is not None and isinstance(obj.d, int) and obj.d >= 1 else 1000
        return LR_SCALE / d**0.5


@dataclass(repr=False)
class Subspace(TunedStrategy):
    """Train theta in a random d-dimensional subspace of the weights (and a linear head).

    Parameters
    ----------
    d : int
        Dimension of theta, >= 1 and at most D (the number of projected weights).
    projection : {"fastfood", "dense"}
        Fastfood (structured, O(D log d) per step, for any model) or a dense Gaussian matrix
        (tiny models: D x d at most 16 million numbers).
    said : bool
        Also learn one scale per projected tensor (SAID): theta = [theta_d, lambda_1..m].
    projected : {"blocks", "body"}
        Which weights move: the blocks (and final norm), or the embeddings too.
    projection_seed : int or None
        Seed of P; None uses the classifier's seed. The same seed gives the same P.
    """

    name: ClassVar[str] = "subspace"
    summary: ClassVar[str] = (
        "only theta (d numbers): weights = pretrained + P theta, P a Fastfood random projection "
        f"(default learning rate {LR_SCALE:g}/sqrt(d))"
    )
    # 0.3/sqrt(d) (0.0095 at the default d): see _LearningRateOfD
    default_learning_rate: ClassVar[float | None] = _LearningRateOfD()  # type: ignore[assignment]
    default_epochs: ClassVar[int | None] = 5
    sweep_defaults: ClassVar[dict[str, list]] = {"d": [1000]}

    d: int = setting(1000, "Dimension of the trained subspace (theta).", int_at_least(1))
    projection: str = setting(
        "fastfood",
        "fastfood (any model) or dense (tiny models).",
        one_of("fastfood", "dense"),
        choices=("fastfood", "dense"),
    )
    said: bool = setting(True, "Learn a scale per projected tensor (SAID).", is_bool)
    projected: str = setting(
        "blocks", "blocks (every block's weights) or body (the embeddings too).", one_of(*PROJECTED), choices=PROJECTED
    )
    projection_seed: int | None = setting(
        None, "Seed of the projection (default: the classifier's seed).", int_at_least(0, True)
    )

    def check_model(self, backbone: Backbone, layers: Sequence[int]) -> None:
        from ..training.projection import DENSE_LIMIT

        total = sum(p.numel() for _, p in projected_parameters(backbone, self.projected))
        check_int(self.d, "d", self.name, 1, total, f" for this model (D = {total:,} projected weights)")
        if self.projection == "dense" and total * self.d > DENSE_LIMIT:
            raise invalid_parameter(
                "projection",
                self.name,
                f"'fastfood' for this model and d: a dense P would hold D x d = {total:,} x {self.d:,} numbers "
                f"({total * self.d * 4 / 2**30:.1f} GiB; dense allows {DENSE_LIMIT:,})",
                self.projection,
            )

    def frozen_blocks(self, num_blocks: int) -> int:
        return 0  # every block moves with theta

    def prepare(self, backbone: Backbone, seed: int | None = None) -> nn.Module:
        """Freeze the body and reparametrise its projected weights as W0 + lambda_i (P theta)_i (theta = 0).

        ``seed``: the projection's seed (default: ``projection_seed``, else 0)."""
        from ..training.projection import attach_subspace

        if seed is None:
            seed = projection_seed(0, self.projection_seed)
        attach_subspace(
            backbone.model, projected_parameters(backbone, self.projected), self.d, self.projection, seed, self.said
        )
        return backbone.model

    def prepare_to_fit(self, context: FitContext) -> nn.Module:
        return self.prepare(context.backbone, projection_seed(context.seed, self.projection_seed))

    def make_predictor(
        self, context: FitContext, network: TextClassificationModel, frozen_k: int, prefix_key: str
    ) -> SubspacePredictor:
        assert context.training is not None
        return SubspacePredictor(
            context.backbone,
            network,
            0,
            context.base_fingerprint,
            context.max_length,
            context.batch_size,
            prefix_cache=context.training.prefix_cache,
            projection_seed=projection_seed(context.seed, self.projection_seed),
            precision=context.inference_precision,
        )

    def fit_facts(self, backbone: Backbone) -> dict:
        from ..training.projection import subspace_of

        subspace = subspace_of(backbone.model)
        assert subspace is not None
        return {
            "projected_parameters": subspace.D,
            "projected_tensors": len(subspace.shapes),
            "projection_seed": subspace.projection.seed,
            "theta_norm": float(subspace.theta.detach().norm()),
        }


@register_predictor
class SubspacePredictor(NetworkPredictor):
    """A network whose body is the pretrained model moved within a random subspace, and a linear head.

    Its state is theta, SAID's scales and the head, plus what regenerates P (kind, seed) and
    a digest of P that loading checks.
    """

    type_name: ClassVar[str] = "subspace"

    def __init__(self, *args, projection_seed: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.projection_seed = projection_seed

    @property
    def subspace(self) -> SubspaceModule:
        from ..training.projection import subspace_of

        found = subspace_of(self.backbone.model)
        assert found is not None
        return found

    def state(self) -> PredictorState:
        subspace = self.subspace
        tensors: Tensors = {"theta": subspace.theta.detach().cpu().contiguous()}
        if subspace.said is not None:
            tensors["said"] = subspace.said.detach().cpu().contiguous()
        tensors.update({f"head.{k}": v.detach().cpu().contiguous() for k, v in self.network.head.state_dict().items()})
        projection = subspace.projection
        meta = {
            "type": self.type_name,
            "n_classes": self.network.head.out_features,
            "prefix_cache": self.prefix_cache,
            "projection": {
                "kind": projection.kind,
                "seed": self.projection_seed,
                "d": projection.d,
                "D": projection.D,
                "tensors": len(subspace.shapes),
                "said": subspace.said is not None,
                "digest": projection.digest(),
            },
        }
        return PredictorState({"trained": tensors}, meta)

    @classmethod
    def from_state(cls, context: FitContext, strategy: Strategy, state: PredictorState) -> SubspacePredictor:
        import torch

        if not isinstance(strategy, Subspace):  # the registry pairs this predictor with subspace alone
            raise TypeError(f"a subspace predictor needs the subspace strategy, not {strategy.name!r}")
        backbone, meta = context.backbone, state.meta
        saved = meta.get("projection", {})
        tensors = state.files["trained"]
        try:
            seed = int(saved["seed"])
            backbone.model = strategy.prepare(backbone, seed)
            subspace = cls._subspace_of(backbone)
            if (saved.get("kind"), saved.get("D"), saved.get("d")) != (
                subspace.projection.kind,
                subspace.D,
                subspace.projection.d,
            ):
                raise UnfreezeError(
                    f"the saved projection ({saved.get('kind')}, D={saved.get('D')}, d={saved.get('d')}) is not the "
                    f"one this model and strategy give ({subspace.projection.kind}, D={subspace.D}, "
                    f"d={subspace.projection.d})"
                )
            if saved.get("digest") != subspace.projection.digest():
                raise UnfreezeError(
                    "the projection regenerated from its seed differs from the saved one's digest "
                    "(another numpy version draws other numbers)"
                )
            network = rebuilt_network(context, int(meta.get("n_classes", context.n_classes)))
            with torch.no_grad():
                subspace.theta.copy_(torch.as_tensor(tensors["theta"]))
                if subspace.said is not None:
                    subspace.said.copy_(torch.as_tensor(tensors["said"]))
                network.head.load_state_dict(
                    {k.removeprefix("head."): torch.as_tensor(v) for k, v in tensors.items() if k.startswith("head.")}
                )
        except UnfreezeError as exc:
            raise UnfreezeError(f"Cannot load this subspace bundle: {exc}. Refit it.") from exc
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise UnfreezeError(
                f"trained.safetensors does not fit this subspace model ({str(exc).splitlines()[0]}). Refit the bundle."
            ) from exc
        network.to(backbone.device).eval()
        return cls(
            backbone,
            network,
            0,
            context.base_fingerprint,
            context.max_length,
            context.batch_size,
            prefix_cache=bool(meta.get("prefix_cache", True)),
            projection_seed=seed,
            precision=context.inference_precision,
        )

    @staticmethod
    def _subspace_of(backbone: Backbone) -> SubspaceModule:
        from ..training.projection import subspace_of

        found = subspace_of(backbone.model)
        if found is None:
            raise UnfreezeError("the strategy did not install a subspace")
        return found
