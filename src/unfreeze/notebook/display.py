"""How the objects a user gets in Python show in Jupyter: a caption, a table, the run's plots. No torch.

The HTML is deliberately plain (pandas' ``to_html`` of the object's ``to_frame()``, escaped), and a
plot is the PNG the run already wrote, embedded as a data URI: the cell's output works offline and
survives the notebook being saved, mailed or rendered by GitHub.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

# a sweep of hundreds of cells shows its first rows in the notebook; to_frame() has them all
MAX_ROWS = 60


def frame_html(frame: pd.DataFrame, caption: str, max_rows: int = MAX_ROWS) -> str:
    """``frame`` as an escaped HTML table under a one-line caption (the object's name and what it holds)."""
    table = frame.to_html(index=False, escape=True, na_rep="", max_rows=max_rows, float_format=_number, border=0)
    return f'<div class="unfreeze"><p><b>{html.escape(caption)}</b></p>{table}</div>'


def images_html(paths: Iterable[Path | None], alt: str = "plot") -> str:
    """The PNGs among ``paths`` that exist, each embedded as a data URI (no file link: the output stands alone)."""
    out = []
    for path in paths:
        if path is None or not Path(path).is_file():
            continue
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        name = html.escape(f"{alt}: {Path(path).name}", quote=True)
        out.append(f'<img src="data:image/png;base64,{data}" alt="{name}" style="max-width:100%">')
    return "".join(out)


def _number(value: float) -> str:
    """Scores and seconds to four significant digits: a notebook table is read, not parsed (to_frame keeps all)."""
    return f"{value:.4g}"
