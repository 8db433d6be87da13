"""The HTTP service under a bounded load: 16 concurrent clients on loopback for 30 s, with and
without micro-batching, or (``--runtime onnx``) PyTorch against ONNX Runtime.

A multi-head bundle (MiniLM, 3 heads fitted on movie-snippets) is served by `unfreeze serve`
in a subprocess on a free 127.0.0.1 port. Each client sends one request after another, each
with 1 to 4 movie-snippets texts, for the given duration; the load stops by itself. Prints
requests and texts per second, p50/p99 latency and errors for each setting, then the
throughput ratio: by default micro-batching over one request at a time (above 1: batching
is faster); with ``--runtime onnx`` the bundle is exported (``unfreeze export --int8``) and
served with micro-batching by PyTorch, ONNX Runtime fp32 and int8, and the ratio is ONNX
fp32 over PyTorch requests/s (the int8 ratio is printed above it).

    python bench/serve.py [--quick] [--runtime torch|onnx] [--clients 16] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import movie_snippets, print_closing, print_machine

HEADS = [("sentiment", "mean", "-1"), ("sentiment-cls", "cls", "-1"), ("sentiment-top2", "mean", "-2,-1")]


def build_bundle(folder: Path) -> tuple[Path, list[str]]:
    from unfreeze import MultiHeadClassifier

    train, test = movie_snippets(500, 1000, seed=0)
    suite = MultiHeadClassifier("minilm-l6", device="cpu", progress=False)
    for name, pooling, layers in HEADS:
        suite.add_head(name, train.texts, train.labels, pooling=pooling, layers=layers)
    return suite.save(folder / "suite"), test.texts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(bundle: Path, options: list[str]) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "unfreeze",
            "serve",
            str(bundle),
            "--port",
            str(port),
            "--log-level",
            "warning",
            *options,
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start")


async def load(url: str, texts: list[str], clients: int, seconds: float, seed: int) -> dict:
    import httpx

    latencies: list[float] = []
    sent_texts, errors = 0, 0
    deadline = time.perf_counter() + seconds

    async def client(i: int) -> None:
        nonlocal sent_texts, errors
        rng = random.Random(seed * 1000 + i)
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            while time.perf_counter() < deadline:  # bounded in time: the load stops by itself
                batch = rng.sample(texts, rng.randint(1, 4))
                start = time.perf_counter()
                try:
                    response = await http.post("/predict", json={"texts": batch})
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - start)
                sent_texts += len(batch) if ok else 0
                errors += not ok

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    return {
        "requests/s": len(latencies) / elapsed,
        "texts/s": sent_texts / elapsed,
        "p50 ms": np.percentile(ms, 50),
        "p99 ms": np.percentile(ms, 99),
        "errors": errors,
        "requests": len(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10 s per setting")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--runtime",
        choices=("torch", "onnx"),
        default="torch",
        help="onnx: PyTorch vs ONNX Runtime fp32 and int8, all micro-batching",
    )
    args = parser.parse_args()
    seconds = 10.0 if args.quick else args.seconds
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # the server and the clients share the cores

    print_machine()
    bundle, texts = build_bundle(Path(tempfile.mkdtemp(prefix="bench-serve-")))
    batching = ["--max-batch", "64", "--max-wait-ms", "5"]
    if args.runtime == "onnx":
        from unfreeze.export.exporter import export_bundle

        start = time.perf_counter()
        done = export_bundle(bundle, int8=True)
        print(f"export (fp32 + int8, checked): {time.perf_counter() - start:.1f} s")
        for line in done.lines()[1:]:
            print(f"  {line}")
        settings = {
            "torch": batching,
            "onnx fp32": [*batching, "--runtime", "onnx"],
            "onnx int8": [*batching, "--runtime", "onnx", "--precision", "int8"],
        }
    else:
        settings = {"micro-batching": batching, "one at a time": ["--no-micro-batching"]}
    results = {}
    for label, options in settings.items():
        proc, url = start_server(bundle, options)
        try:
            results[label] = asyncio.run(load(url, texts, args.clients, seconds, seed=0))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    print(
        f"{args.clients} clients, {seconds:.0f} s each, 1-4 texts per request, {len(HEADS)} heads, MiniLM on CPU"
        + (", micro-batching" if args.runtime == "onnx" else "")
    )
    print(f"{'':<16}{'requests/s':>11}{'texts/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'errors':>8}{'requests':>10}")
    for label, r in results.items():
        print(
            f"{label:<16}{r['requests/s']:>11.1f}{r['texts/s']:>9.1f}{r['p50 ms']:>8.0f}{r['p99 ms']:>8.0f}"
            f"{r['errors']:>8}{r['requests']:>10}"
        )
    if any(r["errors"] for r in results.values()):
        print("errors: some requests failed")
    if args.runtime == "onnx":
        print(f"int8 ratio: {results['onnx int8']['requests/s'] / results['torch']['requests/s']:.2f}")
        print_closing(results["onnx fp32"]["requests/s"] / results["torch"]["requests/s"])
    else:
        print_closing(results["micro-batching"]["requests/s"] / results["one at a time"]["requests/s"])


if __name__ == "__main__":
    main()
