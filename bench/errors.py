"""Time to the error: how long a fresh process takes to say that a file or a column is missing.

Each case runs in a fresh `python` process (nothing imported, caches of the OS warm after
the first run) and must exit with code 2 and one `error:` line. Cases:

    cli missing file      python -m unfreeze fit MISSING.csv -o out
    cli missing column    python -m unfreeze fit data.csv --label-col stars -o out
    lib missing file      load_data("MISSING.csv")
    lib missing column    load_data("data.csv", label_col=...)
    cli-shaped            import unfreeze.cli, then load_data("MISSING.csv"): what the command
                          line costs once it validates before importing the classifier
    python                python -c pass                        (the floor)

Prints the CPU model, the median and the spread of each, the slowest imports of the missing-file
command (``-X importtime``), and closes with ``ratio: X.XX``: the 1.5 s target over the slowest
command-line case (above 1: within the target). No peer is involved.

    python bench/errors.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 1.5
SRC = Path(__file__).resolve().parents[1] / "src"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "UNFREEZE_DEBUG"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def run_once(argv: list[str], cwd: Path, expect_error: bool) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=environment(), timeout=300)
    seconds = time.perf_counter() - start
    if expect_error:
        lines = proc.stderr.splitlines()
        if proc.returncode != 2 or len(lines) != 1 or not lines[0].startswith("error: "):
            raise SystemExit(
                f"{' '.join(argv)}: expected exit 2 and one error line, got {proc.returncode}: {proc.stderr[-2000:]}"
            )
    return seconds


def import_profile(argv: list[str], cwd: Path, top: int = 8) -> list[tuple[float, str]]:
    """The slowest imports (cumulative seconds, module) of one run with -X importtime."""
    proc = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment(),
        timeout=300,
    )
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self, cumulative, name = line[len("import time:") :].split("|")
        depth = len(name) - len(name.lstrip(" "))
        rows.append((int(cumulative) / 1e6, depth, name.strip()))
    shallowest = min((depth for _, depth, _ in rows), default=0)
    # what the command imported itself, not what those imports imported in turn
    return sorted(((s, n) for s, d, n in rows if d <= shallowest + 2), reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs per case instead of 7")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)

    print(f"cpu: {cpu_model()} ({os.cpu_count()} logical cores); python {platform.python_version()}")
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="unfreeze-bench-errors-") as folder:
        work = Path(folder)
        data = work / "data.csv"
        data.write_text("text,label\n" + "".join(f"text number {i},{i % 2}\n" for i in range(200)))
        missing = work / "MISSING.csv"
        lib = (
            "from unfreeze.data import load_data\nimport sys\ntry:\n    {call}\nexcept Exception as e:\n"
            "    print('error:', e, file=sys.stderr); sys.exit(2)"
        )
        cases = [
            ("python -c pass", [python, "-c", "pass"], False),
            ("lib missing file", [python, "-c", lib.format(call=f"load_data({str(missing)!r})")], True),
            (
                "lib missing column",
                [python, "-c", lib.format(call=f"load_data({str(data)!r}, label_col='stars')")],
                True,
            ),
            (
                "cli-shaped",
                [python, "-c", "import unfreeze.cli\n" + lib.format(call=f"load_data({str(missing)!r})")],
                True,
            ),
            ("cli missing file", [python, "-m", "unfreeze", "fit", str(missing), "-o", str(work / "out")], True),
            (
                "cli missing column",
                [python, "-m", "unfreeze", "fit", str(data), "--label-col", "stars", "-o", str(work / "out")],
                True,
            ),
        ]
        results = {}
        for name, argv, expect_error in cases:
            run_once(argv, work, expect_error)  # warm the OS caches
            times = [run_once(argv, work, expect_error) for _ in range(repeats)]
            results[name] = times
            print(
                f"{name:<20} median {statistics.median(times):6.3f} s   min {min(times):6.3f}   "
                f"max {max(times):6.3f}   ({repeats} runs)"
            )
        print("\nslowest imports of `unfreeze fit MISSING.csv` (cumulative seconds, one run):")
        for seconds, module in import_profile(cases[4][1], work):
            print(f"  {seconds:6.3f}  {module.strip()}")
        if not args.quick:
            print("\nslowest imports of `load_data(MISSING.csv)`:")
            for seconds, module in import_profile(cases[1][1], work):
                print(f"  {seconds:6.3f}  {module.strip()}")
    worst_cli = max(statistics.median(results[n]) for n in ("cli missing file", "cli missing column"))
    worst_lib = max(statistics.median(results[n]) for n in ("lib missing file", "lib missing column"))
    shaped = statistics.median(results["cli-shaped"])
    print(
        f"\ntarget {TARGET_SECONDS} s: command line {'within' if worst_cli <= TARGET_SECONDS else 'OVER'} "
        f"({worst_cli:.2f} s), library {'within' if worst_lib <= TARGET_SECONDS else 'OVER'} ({worst_lib:.2f} s), "
        f"command-line-shaped {'within' if shaped <= TARGET_SECONDS else 'OVER'} ({shaped:.2f} s)"
    )
    print(f"ratio: {TARGET_SECONDS / worst_cli:.2f}")


if __name__ == "__main__":
    main()
