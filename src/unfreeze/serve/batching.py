"""Micro-batching: concurrent requests share one forward pass.

Requests wait in a queue; one worker takes the oldest and then keeps collecting until the
batch holds ``max_batch`` texts or ``max_wait_ms`` has passed since it started, runs the
model once on every text (in one thread, so torch never runs two forwards at once), and
hands each request its rows. The queue is bounded: past ``max_queue`` waiting texts a
request is refused at once instead of waiting without limit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

Predict = Callable[[list[str], list[str]], dict[str, np.ndarray]]


class QueueFull(Exception):
    """More texts are waiting than the server accepts; the client should retry later."""


@dataclass
class _Pending:
    texts: list[str]
    heads: list[str]
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Collects concurrent ``submit`` calls into batches for ``predict(texts, heads)``.

    With ``enabled=False`` every request runs on its own (still one at a time).
    """

    def __init__(
        self,
        predict: Predict,
        max_batch: int = 64,
        max_wait_ms: float = 5.0,
        max_queue: int = 1024,
        enabled: bool = True,
    ) -> None:
        self.predict = predict
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.enabled = enabled
        self.batches_run = 0
        self.texts_run = 0
        self._queue: list[_Pending] = []
        self._waiting_texts = 0
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        # one thread: the model is not run concurrently, and the event loop stays free to accept requests
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="unfreeze-model")

    @property
    def _started_wakeup(self) -> asyncio.Event:
        if self._wakeup is None:
            raise RuntimeError("MicroBatcher.start() has not run")
        return self._wakeup

    async def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._worker = asyncio.create_task(self._run(), name="unfreeze-micro-batcher")

    async def stop(self, timeout: float = 60.0) -> None:
        """Finish what is queued (for at most ``timeout`` seconds), then stop the worker."""
        deadline = asyncio.get_running_loop().time() + timeout
        while (
            self._queue
            and self._worker is not None
            and not self._worker.done()
            and asyncio.get_running_loop().time() < deadline
        ):
            await asyncio.sleep(0.01)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._executor.shutdown(wait=True)

    async def submit(self, texts: Sequence[str], heads: Sequence[str]) -> dict[str, np.ndarray]:
        if self._waiting_texts + len(texts) > self.max_queue and self._queue:
            raise QueueFull(f"{self._waiting_texts} texts are already waiting (limit {self.max_queue})")
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(list(texts), list(heads), future))
        self._waiting_texts += len(texts)
        self._started_wakeup.set()
        return await future

    def _take_batch(self) -> list[_Pending]:
        batch = [self._queue.pop(0)]
        size = len(batch[0].texts)
        while self.enabled and self._queue and size + len(self._queue[0].texts) <= self.max_batch:
            size += len(self._queue[0].texts)
            batch.append(self._queue.pop(0))
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._started_wakeup.clear()
                await self._started_wakeup.wait()
            if self.enabled:
                # give concurrent requests a bounded moment to join this batch
                deadline = loop.time() + self.max_wait
                while self._waiting_texts < self.max_batch and loop.time() < deadline:
                    self._started_wakeup.clear()
                    try:
                        await asyncio.wait_for(self._started_wakeup.wait(), deadline - loop.time())
                    except TimeoutError:
                        break
            batch = self._take_batch()
            self._waiting_texts -= sum(len(p.texts) for p in batch)
            texts = [t for p in batch for t in p.texts]
            heads = list(dict.fromkeys(h for p in batch for h in p.heads))
            try:
                result = await loop.run_in_executor(self._executor, self.predict, texts, heads)
                start, answers = 0, []
                for p in batch:
                    rows = slice(start, start + len(p.texts))
                    start += len(p.texts)
                    answers.append({h: result[h][rows] for h in p.heads})
            except Exception as exc:  # noqa: BLE001 - the requests of this batch fail (500); the server goes on
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            self.batches_run += 1
            self.texts_run += len(texts)
            for p, answer in zip(batch, answers):
                if not p.future.done():  # a client that went away cancels its future
                    p.future.set_result(answer)
