"""The sweep report in a real browser (Playwright driving the system's Chromium): it draws every cell offline
from a file, without a console error or a failed request, its tooltips name the cell, and its legend hides a
strategy. Screenshots land in pytest's tmp_path (the path is printed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from unfreeze.sweep import SweepSpec

# Debian's Chromium (.ci/run installs it with apt when missing); Playwright's own browser download cannot run here
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# headless, and quiet: without the background-networking flags it tries the network, closed here
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
POINTS = ".mark-symbol.role-mark path"

pytestmark = [
    pytest.mark.slow,  # starts a browser
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason="no Chromium at /usr/bin/chromium: .ci/run installs it with apt-get where apt can (here it could not)",
    ),
]


@pytest.fixture(scope="module")
def report(tmp_path_factory, tiny_model_dir):
    """A tiny sweep's report: features, and freeze at k = 0 and 1 with two rates tried, at two sizes and two
    seeds (12 cells, 8 of them setting k)."""
    from test_sweep import write_toy_csv
    from unfreeze.report import build_report
    from unfreeze.sweep.runner import run_sweep

    folder = tmp_path_factory.mktemp("browser")
    spec = SweepSpec(
        data=str(write_toy_csv(folder / "train.csv", 48, 0)),
        test=str(write_toy_csv(folder / "test.csv", 16, 1)),
        model=str(tiny_model_dir("bert")),
        strategies=["features", "freeze"],
        k=[0, 1],
        n_train=[8, 16],
        seeds=[0, 1],
        epochs=1,
        batch_size=8,
        learning_rate=[1e-4, 5e-4],
        validation_fraction=0.25,
    )
    run_sweep(spec, folder / "run", progress=False)
    return build_report(folder / "run", "accuracy")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield launched
        launched.close()


def open_page(browser, path: Path):
    """The page loaded from its file, and the problems seen: console errors, page errors, failed requests and
    any request that leaves the file (the page must work offline)."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed request: {r.url}"))
    page.on("request", lambda r: None if r.url.startswith(("file:", "data:")) else problems.append(f"request: {r.url}"))
    page.goto(path.resolve().as_uri())
    return page, problems


def drawn(page, plot: str) -> int:
    return page.locator(f"#{plot} {POINTS}").count()


def wait_drawn(page, plot: str, points: int) -> None:
    """Wait until ``plot`` shows exactly ``points`` points (Vega draws after the page has loaded)."""
    page.wait_for_function(
        "([plot, n, css]) => document.querySelectorAll(`#${plot} ${css}`).length === n",
        arg=[plot, points, POINTS],
        timeout=15_000,
    )


def test_sweep_report_draws_every_cell_and_its_tooltips_name_the_cell(report, browser, tmp_path):
    frame = report["frame"]
    done = frame[frame["status"] == "done"]
    assert len(done) == 12
    expected = {"cells-by-size": 12, "cells-by-cost": 12, "cells-by-k": 8}
    assert report["interactive"] == list(expected)

    page, problems = open_page(browser, report["html"])
    for plot, cells in expected.items():
        assert page.locator(f"#{plot}").get_attribute("data-cells") == str(cells)
        wait_drawn(page, plot, cells)
        assert drawn(page, plot) == cells
    assert "Interactive plots" in page.inner_text("body") and "Click a strategy in a legend" in page.inner_text("body")
    page.screenshot(path=str(tmp_path / "sweep-report.png"), full_page=True)

    # the tooltip of a point names its cell: its key, and that cell's configuration, size, seed and rates (a
    # point of the k plot: a freeze cell, whose rate was chosen of two)
    page.locator(f"#cells-by-k {POINTS}").last.hover()  # the last drawn: on top of any it overlaps
    tooltip = page.locator("#vg-tooltip-element")
    tooltip.wait_for(state="visible", timeout=5_000)
    text = tooltip.inner_text()
    page.screenshot(path=str(tmp_path / "sweep-report-tooltip.png"))
    keys = tooltip.locator("td.key").all_inner_texts()
    values = tooltip.locator("td.value").all_inner_texts()
    fields = {k.strip().rstrip(":"): v.strip() for k, v in zip(keys, values)}
    row = done[done["key"] == fields["cell key"]]
    assert len(row) == 1, text
    row = row.iloc[0]
    assert fields["configuration"] == row["label"]
    assert fields["training size"] == str(row["n_train"]) and fields["seed"] == str(row["seed"])
    assert fields["test accuracy"] == f"{row['test_accuracy']:.4f}"
    records = [json.loads(line) for line in (report["html"].parent / "results.jsonl").read_text().splitlines()]
    fit = [r["fit"] for r in records if r.get("key") == row["key"] and r.get("status") == "done"][-1]
    assert fields["rates tried"] == "0.0001, 0.0005"
    assert fields["learning rate"] == f"{fit['learning_rate']:g}" and fit["learning_rate"] in (1e-4, 5e-4)

    # a legend click hides a strategy (its 4 cells), a second click shows it again
    legend = page.locator("#cells-by-size .role-legend-label text", has_text="features")
    legend.click()
    wait_drawn(page, "cells-by-size", 8)
    assert drawn(page, "cells-by-cost") == 12  # each plot has its own legend
    # the legend fades the hidden strategy, not the ones still shown
    faded = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#cells-by-size .role-legend-label text')]
            .map(t => [t.textContent, getComputedStyle(t).opacity]))"""
    )
    assert float(faded["features"]) < 0.5 and float(faded["freeze"]) == 1.0, faded
    page.screenshot(path=str(tmp_path / "sweep-report-hidden.png"))
    legend.click()
    wait_drawn(page, "cells-by-size", 12)
    assert problems == []
    print(f"screenshots: {tmp_path}")


@pytest.fixture(scope="module")
def advise_run(tmp_path_factory, tiny_model_dir):
    """A tiny advisor run (features and freeze k = 0, 2 on 240 texts, two seeds): it stops at the largest size in
    about 10 s; the budget leaves a slower machine room to get there."""
    from typer.testing import CliRunner

    from conftest import sentiment_task_varied
    from unfreeze.cli import app

    folder = tmp_path_factory.mktemp("advise-browser")
    texts, labels = sentiment_task_varied(240, 3)
    data = folder / "train.csv"
    data.write_text("text,label\n" + "\n".join(f"{t},{'pos' if y else 'neg'}" for t, y in zip(texts, labels)) + "\n")
    out = folder / "run"
    args = ["advise", str(data), "--model", tiny_model_dir("bert"), "-o", str(out), "--min-size", "48"]
    args += ["--seeds", "0,1", "--strategies", "features,freeze", "--k", "0,2", "--batch-size", "16"]
    args += ["--max-length", "32", "--epochs", "2", "--budget", "30s", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


def test_advisor_report_draws_every_cell_its_curves_and_names_the_cell(advise_run, browser, tmp_path):
    from unfreeze.sweep import ResultsStore

    plan = json.loads((advise_run / "plan.json").read_text())
    cells = [
        r
        for r in ResultsStore(advise_run).latest(require_cell=True).values()
        if r.get("status") == "done"
        and (r.get("validation") or {}).get(plan.get("score_metric") or "accuracy") is not None
    ]
    predicted = [e["configuration"] for e in plan["plan"] if "predicted" in e]
    page, problems = open_page(browser, advise_run / "report.html")
    assert page.locator("#advise-curves").get_attribute("data-cells") == str(len(cells))
    wait_drawn(page, "advise-curves", len(cells))
    assert page.locator("#advise-curves .mark-line.role-mark path").count() == len(predicted)
    page.screenshot(path=str(tmp_path / "advise-report.png"), full_page=True)
    page.locator(f"#advise-curves {POINTS}").last.hover()
    tooltip = page.locator("#vg-tooltip-element")
    tooltip.wait_for(state="visible", timeout=5_000)
    keys = tooltip.locator("td.key").all_inner_texts()
    values = tooltip.locator("td.value").all_inner_texts()
    fields = {k.strip().rstrip(":"): v.strip() for k, v in zip(keys, values)}
    page.screenshot(path=str(tmp_path / "advise-report-tooltip.png"))
    cell = next(r for r in cells if r["key"] == fields["cell key"])
    assert fields["configuration"] == cell["cell"]["label"] and fields["seed"] == str(cell["cell"]["seed"])
    assert problems == []
    print(f"screenshots: {tmp_path}")


def test_advisor_curves_and_bands_draw_one_per_predicted_configuration(advise_run, browser, tmp_path):
    """The same run's plot with a prediction put into its plan (the tiny run's scatter leaves it none): a curve and
    a band per predicted configuration, and a legend click hides all three layers of one."""
    from unfreeze.advise.interactive import EXPLAINER, advise_charts
    from unfreeze.report.interactive import section
    from unfreeze.sweep import ResultsStore

    plan = json.loads((advise_run / "plan.json").read_text())
    rows = list(ResultsStore(advise_run).latest(require_cell=True).values())
    full = plan["full_size"]
    for entry in plan["plan"]:
        if len(entry.get("sizes") or []) >= 3:  # as many sizes as a prediction takes
            entry["form"] = "pow3"
            entry["predicted"] = {str(n): {"score": 0.8, "low": 0.7, "high": 0.9} for n in (full, 2 * full, 4 * full)}
    names = [e["configuration"] for e in plan["plan"] if "predicted" in e]
    assert names  # the budget reaches the largest size with the leader at least
    path = tmp_path / "curves.html"
    body = section(advise_charts(plan, rows, "accuracy"), EXPLAINER)
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'></head><body>{body}</body></html>")
    page, problems = open_page(browser, path)
    lines, bands = "#advise-curves .mark-line.role-mark path", "#advise-curves .mark-area.role-mark path"
    page.wait_for_function(f"() => document.querySelectorAll('{lines}').length === {len(names)}")
    assert page.locator(bands).count() == len(names)
    page.screenshot(path=str(tmp_path / "advise-curves.png"), full_page=True)
    page.locator("#advise-curves .role-legend-label text", has_text=names[0]).click()
    page.wait_for_function(f"() => document.querySelectorAll('{lines}').length === {len(names) - 1}")
    assert page.locator(bands).count() == len(names) - 1
    assert problems == []


def test_study_page_draws_every_cell_of_every_arm_and_a_legend_click_hides_an_arm(browser, tmp_path):
    """A committed study (LoRA against full fine-tuning: two arms of three cells) copied to tmp_path, its page built
    by `unfreeze report`: a point per cell, the tooltip names the arm and the cell, a legend click hides an arm."""
    from unfreeze.report.study_page import build_study_page

    folder = tmp_path / "lora"
    shutil.copytree(Path(__file__).resolve().parents[1] / "docs/findings/lora/movie-snippets--minilm-l6", folder)
    built = build_study_page(folder)
    frame = built["findings"].frame
    assert built["interactive"] == ["study-cells-by-size", "study-cells-by-cost"]
    assert frame.groupby("arm").size().to_dict() == {"full": 3, "lora": 3}
    page, problems = open_page(browser, built["html"])
    for plot in built["interactive"]:
        assert page.locator(f"#{plot}").get_attribute("data-cells") == "6"
        wait_drawn(page, plot, 6)
    assert "Verdict: holds" in page.inner_text("h2 >> nth=0")
    page.screenshot(path=str(tmp_path / "study-page.png"), full_page=True)

    page.locator(f"#study-cells-by-size {POINTS}").last.hover()
    tooltip = page.locator("#vg-tooltip-element")
    tooltip.wait_for(state="visible", timeout=5_000)
    keys = tooltip.locator("td.key").all_inner_texts()
    values = tooltip.locator("td.value").all_inner_texts()
    fields = {k.strip().rstrip(":"): v.strip() for k, v in zip(keys, values)}
    row = frame[frame["key"] == fields["cell key"]]
    assert len(row) == 1, fields
    row = row.iloc[0]
    assert fields["arm"] == row["arm"] and fields["configuration"] == row["label"]
    assert fields["study configuration"] == row["config"] and fields["seed"] == str(row["seed"])
    assert fields["test accuracy"] == f"{row['test_accuracy']:.4f}"

    page.locator("#study-cells-by-size .role-legend-label text", has_text="lora").click()
    wait_drawn(page, "study-cells-by-size", 3)
    assert drawn(page, "study-cells-by-cost") == 6
    page.screenshot(path=str(tmp_path / "study-page-hidden.png"))
    assert problems == []
    print(f"screenshots: {tmp_path}")
