"""A study's page (`unfreeze report STUDY_DIR`): built on demand from a committed findings folder copied to tmp_path
(docs/findings stays untouched): the verdict, a point per cell of every arm with its cell's record, the names
escaped, nothing else written; anything that is not a study's run refused in one line. The browser case is in
test_report_browser.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import assert_user_error
from unfreeze.cli import app

FINDINGS = Path(__file__).resolve().parents[1] / "docs" / "findings"
# three arms of nine cells each (three sizes, three seeds), every cell done; verdict "partly"
SETFIT = FINDINGS / "setfit" / "movie-snippets--minilm-l6"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def study(tmp_path) -> Path:
    """The setfit study's folder, its title and one arm's name holding markup (the page must escape them)."""
    folder = tmp_path / "setfit"
    shutil.copytree(SETFIT, folder)
    meta = json.loads((folder / "study.json").read_text())
    meta["study"]["study"]["title"] = "SetFit <script>alert(1)</script> & co"
    assert meta["arms"][0]["name"] == "setfit"
    meta["arms"][0]["name"] = "set<fit>"
    (folder / "study.json").write_text(json.dumps(meta))
    return folder


def test_the_page_has_the_verdict_and_a_point_per_cell_of_every_arm(study, runner):
    from unfreeze.report.study_page import arm_points
    from unfreeze.studies import analyse
    from unfreeze.sweep import ResultsStore

    before = snapshot(study)
    result = runner.invoke(app, ["report", str(study)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "study setfit: verdict partly (27 of 27 cells done)",
        f"report: {study / 'report.html'}",
    ]
    # report.html is all it wrote: the study's own files (FINDINGS.md, its PNGs, the arms) are as they were
    after = snapshot(study)
    assert after.keys() - before.keys() == {"report.html"} and all(after[k] == v for k, v in before.items())

    page = (study / "report.html").read_text()
    assert "<h2>Verdict: partly</h2>" in page
    assert "<h1>Study 7: SetFit &lt;script&gt;alert(1)&lt;/script&gt; &amp; co</h1>" in page
    assert "<script>alert(1)" not in page and "set<fit>" not in page
    assert "set\\u003cfit>" in page  # the arm's name in the plots' data, where no "<" can close a script
    assert "<tr><td><b>setfit_vs_full_low</b></td><td>-0.031</td>" in page  # a quantity the rules read, bold
    assert page.count("data:image/png;base64,") == 1  # the analysis' one plot, embedded
    for plot in ("study-cells-by-size", "study-cells-by-cost"):
        assert f"<div id='{plot}' data-cells='27'" in page
    assert f"unfreeze report {study / 'arms' / 'setfit'}" in page  # each arm's own sweep report

    # a point per cell of every arm, each the record of its cell
    findings = analyse(study, draw=False)
    points = arm_points(findings, "accuracy")
    assert {a: sum(p["arm"] == a for p in points) for a in ("set<fit>", "features", "full")} == {
        "set<fit>": 9,
        "features": 9,
        "full": 9,
    }
    arms = {"set<fit>": "setfit", "features": "features", "full": "full"}
    for point in points:
        record = ResultsStore(study / "arms" / arms[point["arm"]]).latest(require_cell=True)[point["key"]]
        assert point["configuration"] == record["cell"]["label"]
        assert (point["n"], point["seed"]) == (record["cell"]["n_train"], record["cell"]["seed"])
        assert point["score"] == record["test"]["accuracy"]
        assert point["fit s"] == record["fit"]["seconds"]
    full = next(p for p in points if p["arm"] == "full")
    assert full["study configuration"] == "full fine-tuning" and full["configuration"] == "freeze k=0"


def test_report_refuses_what_is_not_a_study_run_and_writes_nothing(study, runner, tmp_path):
    from unfreeze.errors import UnfreezeError
    from unfreeze.report.study_page import build_study_page

    before = snapshot(study)
    assert_user_error(runner.invoke(app, ["report", str(study), "--metric", "accuracy"]), "--metric", "a study's")
    with pytest.raises(UnfreezeError, match="not a study's run folder"):
        build_study_page(study / "arms" / "full")  # a sweep's folder (an arm)
    meta = json.loads((study / "study.json").read_text())
    del meta["study"]
    (study / "study.json").write_text(json.dumps(meta))
    before["study.json"] = (study / "study.json").read_bytes()
    assert_user_error(runner.invoke(app, ["report", str(study)]), "records no study", "unfreeze study")
    assert snapshot(study) == before


def test_a_partial_study_has_a_page_of_the_cells_it_has(study, runner):
    (study / "arms" / "full" / "results.jsonl").write_text("")  # one arm not run yet
    result = runner.invoke(app, ["report", str(study)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "study setfit: verdict inconclusive (partial: 18 of 27 cells)"
    page = (study / "report.html").read_text()
    assert "Partial run: 18 of 27 cells finished." in page
    assert "Inconclusive: setfit_vs_full_low, setfit_vs_full could not be computed." in page
    assert page.count("data-cells='18'") == 2
