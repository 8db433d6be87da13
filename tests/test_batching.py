"""The micro-batcher on its own: concurrent requests share calls, rows go back to the right
request, a failing batch fails only its requests, and a full queue refuses at once."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from unfreeze.serve.batching import MicroBatcher, QueueFull


class Recorder:
    """A stand-in model: each text's 'probability' is its length, per head; records its calls."""

    def __init__(self, fail_on: str | None = None, delay: float = 0.0) -> None:
        self.calls: list[tuple[list[str], list[str]]] = []
        self.fail_on = fail_on
        self.delay = delay
        self.threads: set[str] = set()

    def __call__(self, texts, heads):
        self.calls.append((list(texts), list(heads)))
        self.threads.add(threading.current_thread().name)
        if self.delay:
            threading.Event().wait(self.delay)
        if self.fail_on is not None and self.fail_on in texts:
            raise ValueError(f"cannot read {self.fail_on!r}")
        return {h: np.array([[len(t), i] for t in texts], dtype=float) for i, h in enumerate(heads)}


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_one_call_and_get_their_own_rows():
    model = Recorder()

    async def scenario():
        batcher = MicroBatcher(model, max_batch=64, max_wait_ms=50)
        await batcher.start()
        requests = [(["a" * i, "b" * (i + 10)], ["x"] if i % 2 else ["x", "y"]) for i in range(1, 9)]
        answers = await asyncio.gather(*(batcher.submit(t, h) for t, h in requests))
        await batcher.stop()
        return requests, answers, batcher

    requests, answers, batcher = run(scenario())
    assert len(model.calls) == 1 and batcher.batches_run == 1 and batcher.texts_run == 16
    assert model.calls[0][1] == ["x", "y"]  # the union of the heads asked for
    for (texts, heads), answer in zip(requests, answers):
        assert list(answer) == heads
        assert answer["x"][:, 0].tolist() == [len(t) for t in texts]
    assert model.threads == {"unfreeze-model_0"}  # the model runs off the event loop, in one thread


def test_batches_are_bounded_by_max_batch():
    model = Recorder()

    async def scenario():
        batcher = MicroBatcher(model, max_batch=4, max_wait_ms=50)
        await batcher.start()
        await asyncio.gather(*(batcher.submit([f"t{i}"], ["x"]) for i in range(10)))
        await batcher.stop()

    run(scenario())
    assert [len(texts) for texts, _ in model.calls] == [4, 4, 2]


def test_disabled_batching_runs_each_request_alone():
    model = Recorder()

    async def scenario():
        batcher = MicroBatcher(model, enabled=False)
        await batcher.start()
        await asyncio.gather(*(batcher.submit([f"t{i}", "u"], ["x"]) for i in range(5)))
        await batcher.stop()

    run(scenario())
    assert [len(texts) for texts, _ in model.calls] == [2] * 5


def test_a_failing_batch_fails_only_its_requests():
    model = Recorder(fail_on="poison")

    async def scenario():
        batcher = MicroBatcher(model, max_batch=2, max_wait_ms=20)
        await batcher.start()
        results = await asyncio.gather(
            batcher.submit(["poison"], ["x"]),
            batcher.submit(["fine"], ["x"]),
            batcher.submit(["later"], ["x"]),
            return_exceptions=True,
        )
        after = await batcher.submit(["after"], ["x"])
        await batcher.stop()
        return results, after

    (first, second, third), after = run(scenario())
    assert isinstance(first, ValueError) and isinstance(second, ValueError)  # the same batch
    assert third["x"][0, 0] == len("later") and after["x"][0, 0] == len("after")


def test_a_full_queue_refuses_at_once():
    model = Recorder(delay=0.3)

    async def scenario():
        batcher = MicroBatcher(model, max_batch=2, max_wait_ms=0, max_queue=4)
        await batcher.start()
        first = asyncio.create_task(batcher.submit(["a", "b"], ["x"]))
        await asyncio.sleep(0.05)  # the first batch is running; the queue is empty again
        waiting = [
            asyncio.create_task(batcher.submit(["c", "d"], ["x"])),
            asyncio.create_task(batcher.submit(["e", "f"], ["x"])),
        ]
        await asyncio.sleep(0)
        with pytest.raises(QueueFull, match="4 texts are already waiting"):
            await batcher.submit(["g"], ["x"])
        done = await asyncio.gather(first, *waiting)
        await batcher.stop()
        return done

    assert len(run(scenario())) == 3
