"""``TrainRecord``: what a fit did, the numbers a result row needs to be trusted. Imports no torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class TrainRecord:
    """What a fit did: the numbers a result row needs to be trusted."""

    epochs_run: int = 0
    steps: int = 0
    best_epoch: int = 0
    examples_seen: int = 0
    tokens_seen: int = 0
    seconds: float = 0.0
    prefix_seconds: float = 0.0
    peak_memory_bytes: int = 0
    # bytes of cached states held per training example (frozen-prefix cache, embeddings): the part of the peak
    # that grows with the training size (what the advisor's cost model scales; 0 when nothing is cached)
    state_bytes_per_example: float = 0.0
    # seconds in training steps (and the frozen-prefix pass): the part of ``seconds`` that grows with the
    # training size; validation, loading and set-up do not
    step_seconds: float = 0.0
    # seconds scoring the validation set after each epoch, and the texts scored (summed over epochs): the
    # advisor projects a fit's time per example and epoch, not from whole cells
    validation_seconds: float = 0.0
    validation_texts: int = 0
    trainable_parameters: int = 0
    total_parameters: int = 0
    device: str = "cpu"
    world_size: int = 1
    epoch_seconds: list[float] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)
