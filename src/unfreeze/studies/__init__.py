"""Studies: a published claim about unfreezing, the sweep that tests it, the analysis, and a verdict.

``studies/NAME.toml`` files describe them (``unfreeze.studies.spec``); ``unfreeze study``
runs one (``runner``: resumable, through the sweep machinery) and writes FINDINGS.md for
the run (``findings``); ``unfreeze study --summary`` puts many runs on one page
(``summary``). Everything but the runner reads results only and imports no torch.
"""

from .analyses import ANALYSES, AnalysisResult, Context, two_way_anova
from .findings import Findings, analyse, write_findings
from .rules import VERDICTS, Verdict, decide
from .spec import Study, load_study

__all__ = [
    "ANALYSES",
    "VERDICTS",
    "AnalysisResult",
    "Context",
    "Findings",
    "Study",
    "Verdict",
    "analyse",
    "decide",
    "load_study",
    "two_way_anova",
    "write_findings",
]
