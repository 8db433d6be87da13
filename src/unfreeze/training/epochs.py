"""The epochs of a fit, shared by every loop: train, validate, keep the best weights, stop early.

:func:`run_epochs` runs epochs until the step budget is spent or :class:`EarlyStopping`'s
patience runs out. Validation after each epoch scores every metric of the task
(``unfreeze.tasks``) and ranks epochs by the task's ``selection``: its default metric (single:
accuracy), ties broken by validation loss; the best epoch's weights are kept (on the CPU) and
restored when training ends, so a fit returns its best epoch, not its last.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:  # loop.py imports this module
    from ..tasks import Task
    from .loop import TrainingRun, TrainRecord


def classes_task(n_classes: int) -> Task:
    """The single-label task of ``n_classes`` classes 0..n-1: what a loop trains for when given no task."""
    from ..tasks import SingleLabel

    return SingleLabel.from_state({}, np.arange(n_classes))


class EarlyStopping:
    """The best validation epoch's weights of ``kept`` (name, parameter), and whether patience has run out.

    ``patience`` epochs without a better score stop training (None: never). Without any
    validation the last epoch counts as the best. ``task`` scores the validation outputs (None:
    single-label classes).
    """

    def __init__(
        self,
        kept: list[tuple[str, nn.Parameter]],
        patience: int | None,
        record: TrainRecord,
        task: Task | None = None,
    ) -> None:
        from ..tasks import SingleLabel

        self.task = task if task is not None else SingleLabel()
        self.kept = kept
        self.patience = patience
        self.record = record
        self.best_score: tuple[float, float] | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_epochs = 0

    def validate(self, epoch: int, logits: np.ndarray, y: np.ndarray) -> dict:
        """Score epoch ``epoch``'s validation ``logits`` against targets ``y``; keep the weights if best. Returns
        the history entry's validation fields (``val_loss`` and ``val_`` + every metric of the task)."""
        metrics = self.task.scores(y, logits)
        score = self.task.selection(y, logits)  # single: (accuracy, -cross-entropy), as before tasks existed
        val_loss = -score[1]
        if self.best_score is None or score > self.best_score:
            self.best_score, self.bad_epochs, self.record.best_epoch = score, 0, epoch
            self.best_state = {name: p.detach().cpu().clone() for name, p in self.kept}
        else:
            self.bad_epochs += 1
        return {"val_loss": val_loss, **{f"val_{k}": v for k, v in metrics.items()}}

    @property
    def stop(self) -> bool:
        return self.patience is not None and self.best_score is not None and self.bad_epochs >= self.patience

    def restore(self, module: nn.Module) -> None:
        """Put the best epoch's weights back into ``module`` (never validated: the last epoch is the best)."""
        if self.best_state is not None:
            with torch.no_grad():
                for name, param in module.named_parameters():
                    if name in self.best_state:
                        param.copy_(self.best_state[name].to(param.device))
        elif not self.record.best_epoch:
            self.record.best_epoch = self.record.epochs_run


def run_epochs(
    run: TrainingRun,
    stopping: EarlyStopping,
    train_epoch: Callable[[int], dict],
    validate: Callable[[int], dict] | None,
) -> None:
    """Epochs 1, 2, ... of ``run`` until its budget is spent or ``stopping`` says stop.

    ``train_epoch(epoch)`` runs the epoch's steps, calls ``run.end_steps()`` and returns the
    epoch's history entry; ``validate(epoch)`` (None: no validation set) scores the validation
    set through ``stopping.validate`` and returns the fields it adds to the entry.
    """
    for epoch in range(1, run.n_epochs + 1):
        run.start_epoch()
        entry = train_epoch(epoch)
        if validate is not None:
            entry.update(validate(epoch))
        run.record.history.append(entry)
        run.end_epoch(epoch)
        if stopping.stop or run.budget_spent:
            break
