"""The HTTP service, started with `unfreeze serve` in a subprocess on a loopback port: it answers
like the library, refuses malformed and oversized requests with the right 4xx, batches
concurrent requests, finishes requests in flight on SIGTERM, and schemathesis finds no
server error against its OpenAPI spec."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from unfreeze import Classifier, MultiHeadClassifier

TEXTS = [
    f"{w} film number {i} with {'good' if i % 2 else 'bad'} acting and {'sport' if i % 3 else 'news'}"
    for i, w in enumerate(["a", "the", "one", "this", "that", "some", "my", "our", "your", "his"] * 3)
]
SENTIMENT = ["pos" if i % 2 else "neg" for i in range(len(TEXTS))]
TOPIC = [i % 3 for i in range(len(TEXTS))]
NEW_TEXTS = ["a good film about sport", "bad news", "something else entirely", "good good good", "x"]
LIMITS = ["--max-texts", "8", "--max-chars", "200", "--max-body-bytes", "4096"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`unfreeze serve BUNDLE` in a subprocess on a free loopback port."""

    def __init__(self, bundle: Path, *options: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": SRC}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "unfreeze",
                "serve",
                str(bundle),
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                *options,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stdout.read().decode()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not start in 120 s")

    def post(self, body, **kwargs) -> httpx.Response:
        return httpx.post(f"{self.url}/predict", json=body, timeout=30, **kwargs)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def suite_bundle(tiny_model_dir, tmp_path_factory) -> Path:
    suite = MultiHeadClassifier(tiny_model_dir("bert"), batch_size=8, progress=False)
    suite.add_head("sentiment", TEXTS, SENTIMENT, C=1.0, cache=False)
    suite.add_head("topic", TEXTS, TOPIC, pooling="cls", layers="-2,-1", C=1.0, cache=False)
    return suite.save(tmp_path_factory.mktemp("serve") / "suite")


@pytest.fixture(scope="module")
def server(suite_bundle):
    running = Server(suite_bundle, *LIMITS, "--max-wait-ms", "50")
    yield running
    assert running.stop() == 0


def test_predict_matches_the_library(server, suite_bundle):
    expected = MultiHeadClassifier.load(suite_bundle).predict_proba(NEW_TEXTS)
    response = server.post({"texts": NEW_TEXTS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body["results"]) == {"sentiment", "topic"}
    for name, proba in expected.items():
        result = body["results"][name]
        np.testing.assert_allclose(result["probabilities"], proba, atol=1e-6)
        assert result["predictions"] == [result["labels"][j] for j in proba.argmax(axis=1)]
    assert body["results"]["topic"]["labels"] == [0, 1, 2]  # int labels stay ints
    only = server.post({"texts": NEW_TEXTS[:2], "heads": ["topic"]}).json()
    assert list(only["results"]) == ["topic"]


def test_heads_and_health(server):
    heads = httpx.get(f"{server.url}/heads").json()
    assert [(h["name"], h["pooling"], h["layers"], h["labels"]) for h in heads["heads"]] == [
        ("sentiment", "mean", [2], ["neg", "pos"]),
        ("topic", "cls", [1, 2], [0, 1, 2]),
    ]
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["heads"] == 2
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert {"/predict", "/heads", "/health"} <= set(spec["paths"])
    assert httpx.get(f"{server.url}/docs").status_code == 200


MALFORMED = [
    ("not json", b"{texts: nope", {"content-type": "application/json"}, 422, None),
    ("no texts", {"heads": ["topic"]}, None, 422, "missing"),
    ("texts not a list", {"texts": "one text"}, None, 422, "list_type"),
    ("empty texts", {"texts": []}, None, 422, "too_short"),
    ("a text not a string", {"texts": ["ok", 3]}, None, 422, "string_type"),
    ("too many texts", {"texts": ["t"] * 9}, None, 422, "too_long"),
    ("a text too long", {"texts": ["x" * 201]}, None, 422, "string_too_long"),
    ("unknown head", {"texts": ["t"], "heads": ["nope"]}, None, 422, "'sentiment' or 'topic'"),
    ("empty heads", {"texts": ["t"], "heads": []}, None, 422, "too_short"),
    ("unknown field", {"texts": ["t"], "model": "/etc/passwd"}, None, 422, "extra_forbidden"),
    ("a lone surrogate", b'{"texts": ["bad \\ud800 text"]}', {"content-type": "application/json"}, 422, "unicode"),
    ("body too large", {"texts": ["x" * 190] * 8, "pad": "y" * 4000}, None, 413, "over the limit"),
]


@pytest.mark.parametrize("case, body, headers, status, words", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_requests_are_refused(server, case, body, headers, status, words):
    if isinstance(body, bytes):
        response = httpx.post(f"{server.url}/predict", content=body, headers=headers, timeout=30)
    else:
        response = server.post(body)
    assert response.status_code == status, response.text
    assert "detail" in response.json()
    if words:
        assert words in response.text
    assert httpx.get(f"{server.url}/health").status_code == 200  # and the server is fine


def test_a_chunked_body_over_the_limit_is_refused(server):
    def chunks():
        for _ in range(10):
            yield b" " * 1000  # 10 kB of JSON whitespace, no Content-Length

    response = httpx.post(f"{server.url}/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_wrong_method_and_path(server):
    assert httpx.get(f"{server.url}/predict").status_code == 405
    assert httpx.get(f"{server.url}/nothing-here").status_code == 404


def test_concurrent_requests_share_forward_passes(server, suite_bundle):
    expected = MultiHeadClassifier.load(suite_bundle).predict_proba(TEXTS[:16])
    before = httpx.get(f"{server.url}/health").json()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda i: server.post({"texts": [TEXTS[i]]}), range(16)))
    after = httpx.get(f"{server.url}/health").json()
    for i, response in enumerate(responses):
        assert response.status_code == 200
        np.testing.assert_allclose(
            response.json()["results"]["sentiment"]["probabilities"][0], expected["sentiment"][i], atol=1e-6
        )
    assert after["texts"] - before["texts"] == 16
    assert after["batches"] - before["batches"] < 16  # 50 ms of waiting let requests join a batch


@pytest.mark.slow
def test_without_micro_batching_every_request_runs_alone(suite_bundle):
    server = Server(suite_bundle, "--no-micro-batching")
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda i: server.post({"texts": [TEXTS[i]]}), range(8)))
        assert all(r.status_code == 200 for r in responses)
        health = httpx.get(f"{server.url}/health").json()
        assert health["batches"] == health["texts"] == 8  # 8 requests, 8 forward passes
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_sigterm_answers_requests_in_flight_then_exits(suite_bundle):
    # a 2 s batching window keeps the request in flight when SIGTERM arrives
    server = Server(suite_bundle, "--max-wait-ms", "2000")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(server.post, {"texts": NEW_TEXTS})
        time.sleep(0.7)
        server.proc.send_signal(signal.SIGTERM)
        response = pending.result(timeout=30)
    assert response.status_code == 200
    assert len(response.json()["results"]["sentiment"]["predictions"]) == len(NEW_TEXTS)
    assert server.proc.wait(timeout=30) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/health", timeout=2)


@pytest.mark.slow
def test_serves_a_fine_tuned_bundle(tiny_model_dir, tmp_path):
    clf = Classifier(
        model=tiny_model_dir("bert"),
        strategy="freeze",
        k=1,
        epochs=1,
        progress=False,
        device="cpu",
        validation_fraction=0.0,
    ).fit(TEXTS, SENTIMENT)
    clf.save(tmp_path / "tuned")
    expected = Classifier.load(tmp_path / "tuned").predict_proba(NEW_TEXTS)
    server = Server(tmp_path / "tuned")
    try:
        heads = httpx.get(f"{server.url}/heads").json()["heads"]
        assert [(h["name"], h["strategy"]) for h in heads] == [("default", "freeze")]
        body = server.post({"texts": NEW_TEXTS}).json()
        np.testing.assert_allclose(body["results"]["default"]["probabilities"], expected, atol=1e-6)
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_a_bad_bundle_fails_before_listening(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "unfreeze", "serve", str(tmp_path), "--port", str(free_port())],
        env={**os.environ, "PYTHONPATH": SRC},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path} is not an unfreeze bundle (no unfreeze.json). Create one with `unfreeze fit`."
    ]


@pytest.mark.skipif(
    shutil.which("schemathesis", path=os.path.dirname(sys.executable)) is None,
    reason="schemathesis is not installed (it comes with the dev extra)",
)
@pytest.mark.slow
def test_schemathesis_finds_no_server_error(server, tmp_path):
    """Property-based requests generated from the OpenAPI spec, valid and invalid: no 5xx, and
    every response matches the spec."""
    st = os.path.join(os.path.dirname(sys.executable), "schemathesis")
    report = tmp_path / "junit.xml"
    result = subprocess.run(
        [
            st,
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            "40",
            "--seed",
            "1",
            "--generation-database",
            "none",
            "--report",
            "junit",
            "--report-junit-path",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )  # schemathesis writes a cache in its cwd
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert 'failures="0"' in report.read_text() or "<failure" not in report.read_text()
    health = httpx.get(f"{server.url}/health").json()
    assert health["texts"] > 40  # schemathesis really reached the model


@pytest.mark.parametrize(
    "option, value, words",
    [
        ("--max-texts", "0", "--max-texts must be an int >= 1"),
        ("--max-wait-ms", "-1", "--max-wait-ms must be a number of milliseconds in [0, 10000]"),
        ("--port", "70000", "--port must be in [0, 65535]"),
    ],
)
def test_bad_serve_options_are_one_line_errors(tmp_path, option, value, words):
    from typer.testing import CliRunner

    from unfreeze.cli import app

    result = CliRunner().invoke(app, ["serve", str(tmp_path / "missing"), option, value])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and words in result.stderr
