"""Notebooks: sweep results, the advisor's plan and a study's findings as tables (``_repr_html_``) and DataFrames
(``to_frame()``), and examples/advisor.ipynb executed in a kernel of this venv with a tiny model."""

from __future__ import annotations

import base64
import json
import re
import sys
from html import escape as html_escape
from pathlib import Path

import pytest

from unfreeze import Plan, SweepResults, load_plan, load_results
from unfreeze.errors import UnfreezeError
from unfreeze.notebook.advice import PLAN_COLUMNS
from unfreeze.sweep import ResultsStore

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n a stand-in for a plot"


def _row(html: str, first_cell: str) -> list[str]:
    """The cells of the HTML table row whose first cell is ``first_cell``."""
    for row in re.findall(r"<tr>(.*?)</tr>", html, re.DOTALL):
        cells = re.findall(r"<td>(.*?)</td>", row, re.DOTALL)
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in {html[:2000]}")


def _plan() -> dict:
    """A plan as plan.json holds it: a recommendation with a predicted score, a configuration the curve could not
    predict, one that failed."""
    return {
        "data": "reviews<b>&.csv",
        "model": "minilm-l6",
        "full_size": 1000,
        "score_metric": "macro_f1",
        "recommendation": {"configuration": "freeze k=4", "score": 0.81, "size": 400, "why": "cheapest"},
        "plan": [
            {
                "configuration": "freeze k=4",
                "strategy": "freeze",
                "status": "candidate",
                "sizes": [100, 200, 400],
                "seeds": 3,
                "measured": {"100": 0.7, "200": 0.76, "400": 0.81},
                "predicted": {"1000": {"score": 0.85, "low": 0.82, "high": 0.88}, "2000": {"score": 0.87}},
                "cost": {"fit_seconds": 42.5},
                "rate_at_largest": 2e-4,
            },
            {
                "configuration": "features",
                "strategy": "features",
                "status": "eliminated",
                "sizes": [100, 200],
                "seeds": 2,
                "measured": {"100": 0.65, "200": 0.66},
                "cost": {"fit_seconds": 3.0},
                "rate_at_largest": None,
                "not_predicted": "measured at 100, 200 only",
            },
            {"configuration": "lora r=8", "strategy": "lora", "status": "failed", "error": "out of memory"},
        ],
    }


def test_a_plan_is_a_frame_of_its_configurations_and_a_table_with_its_curves(tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps(_plan()))
    (tmp_path / "curves.png").write_bytes(PNG)
    plan = load_plan(tmp_path)
    assert isinstance(plan, Plan) and plan["full_size"] == 1000 and plan.data == _plan()  # the stored dict
    frame = plan.to_frame()
    assert list(frame.columns) == list(PLAN_COLUMNS)
    assert frame["configuration"].tolist() == ["freeze k=4", "features", "lora r=8"]
    assert frame["recommended"].tolist() == [True, False, False]
    assert frame["largest_size"].tolist()[:2] == [400, 200] and frame["largest_size"].isna().tolist()[2]
    first = frame.iloc[0]
    assert (first["measured"], first["predicted"], first["low"], first["high"]) == (0.81, 0.85, 0.82, 0.88)
    assert (first["fit_seconds"], first["learning_rate"], first["seeds"]) == (42.5, 2e-4, 3)
    assert frame["predicted"].isna().tolist() == [False, True, True]  # NaN, not None: a float column
    assert frame["note"].tolist() == ["", "measured at 100, 200 only", "out of memory"]

    html = plan._repr_html_()
    # the caption names the recommendation; what came from a file or the user is escaped
    assert "reviews&lt;b&gt;&amp;.csv" in html and "reviews<b>" not in html
    assert "train freeze k=4 (validation macro_f1 0.810 at n=400; full size 1,000)" in html
    assert _row(html, "freeze k=4")[:5] == ["freeze k=4", "freeze", "candidate", "True", "400"]
    assert _row(html, "features")[6] == "0.66" and _row(html, "lora r=8")[-1] == "out of memory"
    assert f"data:image/png;base64,{base64.b64encode(PNG).decode()}" in html
    # a plan read from a lone --json-out file has no curves beside it
    (tmp_path / "elsewhere.json").write_text(json.dumps(_plan()))
    assert "data:image/png" not in load_plan(tmp_path / "elsewhere.json")._repr_html_()


def test_a_plan_without_a_recommendation_says_so(tmp_path):
    data = {**_plan(), "recommendation": None}
    (tmp_path / "plan.json").write_text(json.dumps(data))
    plan = load_plan(tmp_path)
    assert plan.recommendation is None and not plan.to_frame()["recommended"].any()
    assert "no recommendation (no configuration finished; give a larger budget)" in plan._repr_html_()


@pytest.mark.parametrize(
    ("content", "words"),
    [(None, "does not exist: give the folder"), ("[1, 2]", "is not a plan the advisor wrote"), ("{", "not a plan")],
)
def test_load_plan_of_something_else_is_one_line(tmp_path, content, words):
    if content is not None:
        (tmp_path / "plan.json").write_text(content)
    with pytest.raises(UnfreezeError, match=re.escape(words)) as error:
        load_plan(tmp_path)
    assert "\n" not in str(error.value)


def _cell(key: str, status: str, k: int, **fields) -> dict:
    cell = {"strategy": "freeze", "label": f"freeze k={k}", "k": k, "n_train": 64, "seed": 0}
    return {"key": key, "status": status, "cell": cell, **fields}


def test_sweep_results_are_a_frame_of_the_stored_cells_and_a_table_with_the_report_plots(tmp_path):
    store = ResultsStore(tmp_path)
    fit = {"seconds": 12.5, "trainable_parameters": 1234, "total_parameters": 5678, "learning_rate": 1e-4}
    store.append(_cell("a", "failed", 2, error="boom <script>"))
    store.append(_cell("b", "done", 0, train={"accuracy": 1.0}, test={"accuracy": 0.75, "mcc": 0.5}, fit=fit))
    store.append(_cell("a", "done", 2, test={"accuracy": 0.625}, fit={**fit, "seconds": 3.0}))  # a retry supersedes
    (tmp_path / "score_vs_n.png").write_bytes(PNG)
    results = load_results(tmp_path)
    assert isinstance(results, SweepResults)
    assert sorted(r["key"] for r in results.records()) == ["a", "b"]
    frame = results.to_frame().set_index("key")
    assert frame.loc["b", "test_accuracy"] == 0.75 and frame.loc["b", "train_accuracy"] == 1.0
    assert frame.loc["a", "test_accuracy"] == 0.625 and frame.loc["a", "fit_seconds"] == 3.0
    assert frame.loc["b", "fit_seconds"] == 12.5 and frame.loc["b", "trainable_parameters"] == 1234
    assert frame["status"].tolist() == ["done", "done"]

    html = results._repr_html_()
    assert f"sweep {tmp_path}: 2 cells (2 done)" in html
    row = _row(html, "b")
    assert row[:4] == ["b", "done", "freeze", "freeze k=0"] and "0.75" in row
    assert f"data:image/png;base64,{base64.b64encode(PNG).decode()}" in html

    store.append(_cell("c", "failed", 1, error="boom <script>"))
    html = load_results(tmp_path)._repr_html_()
    assert "2 done, 1 failed" in html and "boom &lt;script&gt;" in html and "<script>" not in html


def test_load_results_of_a_folder_without_results_is_one_line(tmp_path):
    with pytest.raises(UnfreezeError, match=re.escape("holds no results.jsonl: it is not a sweep's run folder")):
        load_results(tmp_path)


def test_a_studys_findings_are_a_frame_of_its_quantities_and_a_table_with_its_verdict(tmp_path):
    from test_studies import SCENARIOS, synthetic_run
    from unfreeze.studies import analyse

    findings = analyse(synthetic_run(tmp_path, "reinit-top.toml", SCENARIOS["reinit-top.toml"][0]), draw=False)
    frame = findings.to_frame()
    assert list(frame.columns) == ["quantity", "value", "meaning"]
    assert dict(zip(frame["quantity"], frame["value"], strict=True)) == findings.result.quantities
    assert frame["meaning"].tolist() == [findings.result.meanings.get(q, "") for q in frame["quantity"]]
    html = findings._repr_html_()
    counts = findings.counts
    caption = f"{findings.study.title}; verdict holds ({counts['done']} of {counts['planned']} cells done)"
    assert f"<b>study {findings.study.name}: {html_escape(caption)}</b>" in html
    first = frame.iloc[0]
    assert _row(html, str(first["quantity"]))[0] == first["quantity"]
    assert findings.result.tables and all(f"<b>{html_escape(t.title)}</b>" in html for t in findings.result.tables)
    assert "data:image/png" not in html  # analysed without drawing: no plot to show
    drawn = analyse(findings.run_dir, draw=True)  # the plots FINDINGS.md links, drawn into the run folder
    saved = [findings.run_dir / name for name, _ in drawn.result.figures if name]
    assert saved and all(p.is_file() for p in saved)
    pngs = [base64.b64encode(p.read_bytes()).decode() for p in saved]
    assert all(f"data:image/png;base64,{png}" in drawn._repr_html_() for png in pngs)


def _kernel(tmp_path: Path, monkeypatch) -> str:
    """A kernelspec for this venv's python, written to a folder only this test's Jupyter reads."""
    name = "unfreeze-tests"
    folder = tmp_path / "jupyter" / "kernels" / name
    folder.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (folder / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": name, "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return name


@pytest.mark.slow  # a kernel starts and the advisor runs a pilot (about 20 s); make test runs it
def test_the_advisor_notebook_runs_and_shows_the_plan(tiny_model_dir, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="the dev extra installs nbformat, nbclient and ipykernel")
    nbclient = pytest.importorskip("nbclient", reason="the dev extra installs nbformat, nbclient and ipykernel")
    pytest.importorskip("ipykernel", reason="the dev extra installs nbformat, nbclient and ipykernel")
    output = tmp_path / "advisor-run"
    for name, value in {
        "MODEL": tiny_model_dir("bert"),
        "BUDGET": "30s",
        "STRATEGIES": "features",
        "MAX_SIZE": "96",
        "OUTPUT": str(output),
    }.items():
        monkeypatch.setenv(f"UNFREEZE_NOTEBOOK_{name}", value)
    notebook = nbformat.read(ROOT / "examples" / "advisor.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook, kernel_name=_kernel(tmp_path, monkeypatch), timeout=120, resources={"metadata": {"path": tmp_path}}
    )
    client.execute()

    stored = json.loads((output / "plan.json").read_text())
    rec = stored["recommendation"]["configuration"]
    assert rec == "features"  # the only strategy it was given
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    tables = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert len(tables) == 2, outputs  # the plan, then its frame
    plan_row = _row(tables[0], rec)
    assert plan_row[1:4] == ["features", "candidate", "True"]
    entry = next(e for e in stored["plan"] if e["configuration"] == rec)
    assert plan_row[4] == str(max(entry["sizes"]))
    assert f"train {rec} (validation accuracy" in tables[0]
    printed = "".join(o["text"] for o in outputs if o.get("output_type") == "stream" and o["name"] == "stdout")
    assert printed.startswith(f"{rec}\n") and stored["recommendation"]["why"] in printed
    assert _row(tables[1], rec)[:3] == [rec, "candidate", "True"]  # the frame's columns chosen in the notebook


def test_reading_results_and_plans_in_a_notebook_loads_no_torch(tmp_path):
    """A notebook that only reads run folders starts without torch (a report needs no model)."""
    import subprocess

    (tmp_path / "plan.json").write_text(json.dumps(_plan()))
    ResultsStore(tmp_path).append(_cell("a", "done", 0, test={"accuracy": 0.5}, fit={"seconds": 1.0}))
    code = (
        "import sys; from unfreeze import load_plan, load_results; from unfreeze.studies import Findings; "
        f"load_plan({str(tmp_path)!r})._repr_html_(); load_results({str(tmp_path)!r})._repr_html_(); "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_run_advisor_with_a_setting_it_does_not_take_is_one_line_before_anything_runs(tmp_path):
    from unfreeze import run_advisor

    with pytest.raises(UnfreezeError, match=r"run_advisor\(\) takes no setting 'epoch'\. Settings: .*\bepochs\b"):
        run_advisor("movie-snippets", tmp_path / "run", epoch=2)
    assert not (tmp_path / "run").exists()
