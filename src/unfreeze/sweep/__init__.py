"""Sweeps: grid expansion and cell keys, the results store, the local runner.

Import the runner from ``unfreeze.sweep.runner``: this package's top level stays free
of torch so that reports build without a model.
"""

from .grid import Cell, SweepSpec, expand
from .store import ResultsStore

__all__ = ["Cell", "ResultsStore", "SweepSpec", "expand"]
