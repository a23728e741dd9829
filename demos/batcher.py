"""A micro-batcher in front of the model: requests that arrive while the model is busy decode
together as the rows of one batch, so sixteen waiting users cost about one batched decode
instead of sixteen in a row.

One worker thread owns the model. It takes the oldest waiting request and every other waiting
request that shares its settings (its ``key``: creativity, token budget, method, ...) up to
``max_batch``, and runs them as one call. Rows keep their own prompt, seed and stream. Requests
beyond ``max_waiting`` are refused at once with :class:`Busy` ("retry in ~N s"), so the queue,
and with it every wait, stays bounded.
"""

from __future__ import annotations

import collections
import itertools
import math
import threading
import time
from dataclasses import dataclass, field


class Busy(RuntimeError):
    """The demo is full; the message says when to retry. Shown to the user as is."""

    def __init__(self, waiting: int, retry_s: int):
        self.retry_s = retry_s
        super().__init__(f"The demo is busy ({waiting} requests are waiting); retry in "
                         f"~{retry_s} s.")


class RowSeeds(int):
    """Per-row seeds through an ``int`` seed: the decode loop seeds row ``i`` with ``seed + i``,
    and for this int ``seed + i`` is the ``i``-th request's own seed, so every row draws what
    it would draw alone. (Its value as a plain int is the first row's seed.)"""

    seeds: tuple[int, ...]

    def __new__(cls, seeds):
        obj = super().__new__(cls, seeds[0])
        obj.seeds = tuple(int(s) for s in seeds)
        return obj

    def __add__(self, i):
        return self.seeds[i]

    __radd__ = __add__


@dataclass(eq=False)
class Job:
    """One waiting request: its batch ``key``, what ``run_batch`` needs (``payload``), and the
    outcome (``result`` or ``error``) once ``done`` is set."""

    key: object
    payload: object
    submitted: float = field(default_factory=time.perf_counter)
    started: float | None = None
    result: object = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class MicroBatcher:
    """``run_batch(key, [payload, ...]) -> [result, ...]`` runs in one worker thread; a
    request is :meth:`submit`-ted and its :class:`Job` waited on. ``gather_s``: how long the
    worker waits for companions when fewer than ``max_batch`` share the oldest request's key
    (a few tens of ms: what a lone user pays, and what lets a burst arrive as one batch)."""

    def __init__(self, run_batch, *, max_batch: int = 16, max_waiting: int = 64,
                 gather_s: float = 0.02):
        if not 1 <= max_batch <= 256:
            raise ValueError(f"max_batch must lie in [1, 256], got {max_batch}")
        if not 1 <= max_waiting <= 4096:
            raise ValueError(f"max_waiting must lie in [1, 4096], got {max_waiting}")
        self.run_batch, self.max_batch, self.max_waiting = run_batch, max_batch, max_waiting
        self.gather_s = gather_s
        self._queue: collections.deque[Job] = collections.deque()
        self._cv = threading.Condition()
        self._closed = False
        self.batch_s = None  # moving average of one batch's time (for "retry in ~N s")
        self.stats = collections.Counter()  # batches, rows, refused
        self.running = 0  # rows of the batch being decoded now
        self._worker = threading.Thread(target=self._loop, name="tigerdecode-batcher",
                                        daemon=True)
        self._worker.start()

    # -- client side --------------------------------------------------------------------------
    def submit(self, key, payload) -> Job:
        """Queue one request; raises :class:`Busy` when ``max_waiting`` are already waiting."""
        job = Job(key, payload)
        with self._cv:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            if len(self._queue) >= self.max_waiting:
                self.stats["refused"] += 1
                raise Busy(len(self._queue), self.retry_after_s(len(self._queue)))
            self._queue.append(job)
            self._cv.notify_all()
        return job

    def run(self, key, payload):
        """Submit and wait: the request's result, or its error raised here."""
        job = self.submit(key, payload)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def retry_after_s(self, waiting: int) -> int:
        """About how long until ``waiting`` requests are served: the full batches they make
        plus the one running, at the recent time of a batch (5 s before the first)."""
        per = self.batch_s if self.batch_s is not None else 5.0
        batches = math.ceil(max(waiting, 1) / self.max_batch) + 1
        return max(1, round(batches * per))

    def waiting(self) -> int:
        with self._cv:
            return len(self._queue)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._worker.join(timeout=5)

    # -- the worker ---------------------------------------------------------------------------
    def _take(self) -> list[Job] | None:
        with self._cv:
            while not self._queue and not self._closed:
                self._cv.wait()
            if self._closed and not self._queue:
                return None
            key = self._queue[0].key
            deadline = time.perf_counter() + self.gather_s
            while (sum(j.key == key for j in self._queue) < self.max_batch
                   and (left := deadline - time.perf_counter()) > 0 and not self._closed):
                self._cv.wait(left)
            batch = list(itertools.islice((j for j in self._queue if j.key == key),
                                          self.max_batch))
            for j in batch:
                self._queue.remove(j)
            return batch

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            t0 = time.perf_counter()
            self.running = len(batch)
            for j in batch:
                j.started = t0
            try:
                results = self.run_batch(batch[0].key, [j.payload for j in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"run_batch returned {len(results)} results for "
                                       f"{len(batch)} requests")
                for j, r in zip(batch, results, strict=True):
                    j.result = r
            except BaseException as e:  # noqa: BLE001 - every request of the batch hears it
                for j in batch:
                    j.error = e
            dt = time.perf_counter() - t0
            self.batch_s = dt if self.batch_s is None else 0.7 * self.batch_s + 0.3 * dt
            self.stats["batches"] += 1
            self.stats["rows"] += len(batch)
            self.running = 0
            for j in batch:
                j.done.set()
