"""The analyses a study can ask for: from result rows to named quantities, tables and plots. No torch.

Each analysis kind declares its parameters (``[analysis]`` in the study file), the
quantities it computes (the names a verdict rule may read, each with its meaning), how
many training sizes ``--quick`` keeps, and the configuration labels it needs. Its ``run``
takes the study's rows (one per finished or failed cell: ``config``, the strategy and its
parameters, ``n_train``, ``seed``, train/test metrics, costs) and a :class:`Context`.

Statistics: configurations share their samples seed by seed, so differences are paired
by seed, with percentile-bootstrap intervals over seeds (``unfreeze.report.stats``); a
single configuration's mean gets the bootstrap interval of its seed scores. One seed
gives no interval (NaN), and a rule that reads one is then inconclusive.

One module per kind, registered in :data:`ANALYSES`: ``two_way`` (score ~ k * size,
statsmodels), ``train_test_gap`` (train vs test as blocks are unfrozen or transferred),
``frozen_head`` (head only vs majority vs the last block vs the rest), ``compare`` (named
paired comparisons), ``cost_vs_k`` (seconds, memory and score vs frozen blocks).
"""

from __future__ import annotations

from ...errors import UnfreezeError
from . import compare, cost_vs_k, frozen_head, train_test_gap, two_way
from .base import (
    NAN,
    AnalysisKind,
    AnalysisResult,
    Context,
    Table,
    done_rows,
    fmt,
    fmt_ci,
    mean_interval,
    paired,
    seed_scores,
)
from .two_way import two_way_anova

# one module per kind; a new kind is a module with a ``KIND`` and a line here
ANALYSES: dict[str, AnalysisKind] = {
    kind.name: kind for kind in (two_way.KIND, train_test_gap.KIND, frozen_head.KIND, compare.KIND, cost_vs_k.KIND)
}


def analysis_kind(name: str) -> AnalysisKind:
    if name not in ANALYSES:
        raise UnfreezeError(f"Unknown analysis {name!r}. Analyses: {', '.join(sorted(ANALYSES))}.")
    return ANALYSES[name]


__all__ = [
    "ANALYSES",
    "NAN",
    "AnalysisKind",
    "AnalysisResult",
    "Context",
    "Table",
    "analysis_kind",
    "done_rows",
    "fmt",
    "fmt_ci",
    "mean_interval",
    "paired",
    "seed_scores",
    "two_way_anova",
]
