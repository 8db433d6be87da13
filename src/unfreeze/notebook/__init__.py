"""What a notebook user gets: sweep results, the advisor's plan (and a study's findings, ``unfreeze.studies``) show
as tables and plots in Jupyter (``_repr_html_``) and give pandas DataFrames (``to_frame()``)."""

from .advice import Plan, load_plan, run_advisor
from .sweep import SweepResults, load_results

__all__ = ["Plan", "SweepResults", "load_plan", "load_results", "run_advisor"]
