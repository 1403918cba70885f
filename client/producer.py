"""Producer: enqueues batched in the background.

    with Producer(client, "default", "orders") as producer:
        for order in orders:
            producer.send(order.json(), priority=order.priority)
    # leaving the block flushes: every message is acknowledged or failed

``send`` returns at once with a ``concurrent.futures.Future`` of the message's
``EnqueueResult``. A batch leaves when it holds ``batch_size`` messages or
its oldest message has waited ``linger_ms``; up to ``max_in_flight`` batches
travel at once, and ``send`` blocks while ``max_buffered`` messages wait.

Two in flight by default: one is committed at the node while the next one
forms. More only split the same messages into more calls, and a node spends
more per call than per message: at 5,000 paced jobs/s (jobs_bench's latency
phase) the p99 from submit to handler start was 26-34 ms with one or two in
flight, 58-97 ms with four and 144 ms with sixteen.

Every message carries a dedup key (one is made up if not given), so a batch
retried after a lost answer adds nothing twice. One bad message (say, a
priority outside the queue's range) fails only its own future: the batch is
sent again without it.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from kokaq.client import calls
from kokaq.client._sync.client import Client
from kokaq.core import (
    EnqueueResult,
    FailedPrecondition,
    Headers,
    InvalidArgument,
    Unavailable,
)
from kokaq.core.engine_core import MAX_BATCH
from kokaq.protocol.v1 import kokaq_pb2 as pb

__all__ = ["Producer"]

# (message in wire form, its future, when it was sent: time.monotonic())
_Item = tuple[pb.MessageSpec, "Future[EnqueueResult]", float]

_MESSAGE_FIELD = re.compile(r"messages\[(\d+)\]\.?")


class Producer:
    def __init__(
        self,
        client: Client,
        namespace: str,
        queue: str,
        *,
        linger_ms: float = 5.0,
        batch_size: int = 500,
        max_in_flight: int = 2,
        max_buffered: int = 50_000,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise InvalidArgument("batch_size", f"must be 1 to {MAX_BATCH}")
        if not linger_ms >= 0:
            raise InvalidArgument("linger_ms", "must be zero or more")
        if max_in_flight < 1:
            raise InvalidArgument("max_in_flight", "must be at least 1")
        if max_buffered < batch_size:
            raise InvalidArgument("max_buffered", "must be at least batch_size")
        self.client = client
        self.namespace = namespace
        self.queue = queue
        self._linger = linger_ms / 1000.0
        self._batch_size = batch_size
        self._max_in_flight = max_in_flight
        self._max_buffered = max_buffered
        self._items: deque[_Item] = deque()
        self._in_flight = 0
        self._flushing = 0
        self._closed = False
        self._changed = threading.Condition()
        self._pool = ThreadPoolExecutor(max_in_flight, thread_name_prefix="kokaq-producer-send")
        self._batcher = threading.Thread(
            target=self._batch_loop, name="kokaq-producer", daemon=True
        )
        self._batcher.start()

    def send(
        self,
        payload: bytes | str,
        *,
        priority: int = 0,
        headers: Headers | Mapping[str, str] | None = None,
        **options: Any,
    ) -> Future[EnqueueResult]:
        """Queue one message for the next batch. Options as ``Queue.enqueue``.
        Bad arguments raise here; the server's verdict arrives in the future."""
        message = calls.spec_message(calls.make_spec(payload, priority, headers, **options))
        future: Future[EnqueueResult] = Future()
        with self._changed:
            self._changed.wait_for(lambda: self._closed or len(self._items) < self._max_buffered)
            if self._closed:
                raise FailedPrecondition("the producer is closed")
            self._items.append((message, future, time.monotonic()))
            if len(self._items) == 1 or len(self._items) >= self._batch_size:
                self._changed.notify_all()
        return future

    def flush(self, timeout: float | None = None) -> None:
        """Send what is buffered now and wait until every message is settled."""
        with self._changed:
            self._flushing += 1
            self._changed.notify_all()
            try:
                done = self._changed.wait_for(
                    lambda: not self._items and not self._in_flight, timeout
                )
            finally:
                self._flushing -= 1
            if not done:
                raise Unavailable(f"flush timed out with {len(self._items)} messages unsent")

    def close(self, timeout: float | None = None) -> None:
        """Flush, then stop the background threads. ``send`` fails afterwards."""
        try:
            self.flush(timeout)
        finally:
            with self._changed:
                self._closed = True
                self._changed.notify_all()
            self._batcher.join()
            self._pool.shutdown(wait=True)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- the background ---------------------------------------------------------------

    def _batch_due(self) -> bool:
        if not self._items or self._in_flight >= self._max_in_flight:
            return False
        waited = time.monotonic() - self._items[0][2]
        return (
            len(self._items) >= self._batch_size
            or waited >= self._linger
            or self._flushing > 0
            or self._closed
        )

    def _batch_loop(self) -> None:
        with self._changed:
            while True:
                while not self._batch_due():
                    if self._closed and not self._items:
                        return
                    linger_left = None
                    if self._items and self._in_flight < self._max_in_flight:
                        linger_left = self._linger - (time.monotonic() - self._items[0][2])
                    self._changed.wait(linger_left)
                batch: list[_Item] = []
                while self._items and len(batch) < self._batch_size:
                    item = self._items.popleft()
                    if item[1].set_running_or_notify_cancel():  # False: cancelled by the caller
                        batch.append(item)
                self._changed.notify_all()  # room for senders held by max_buffered
                if batch:
                    self._in_flight += 1
                    self._pool.submit(self._send, batch)

    def _send(self, batch: list[_Item]) -> None:
        try:
            self._deliver(batch)
        finally:
            with self._changed:
                self._in_flight -= 1
                self._changed.notify_all()

    def _deliver(self, batch: list[_Item]) -> None:
        while batch:
            call = calls.enqueue_batch(self.namespace, self.queue, [m for m, _, _ in batch])
            try:
                results = self.client.run(call)
            except InvalidArgument as error:
                index = _message_index(error, len(batch))
                if index is None:
                    _fail(batch, error)
                    return
                batch.pop(index)[1].set_exception(_without_index(error))
                continue
            except Exception as error:  # the whole batch shares one fate
                _fail(batch, error)
                return
            for (_, future, _), result in zip(batch, results, strict=True):
                future.set_result(result)
            return


def _message_index(error: InvalidArgument, size: int) -> int | None:
    """Which message of the batch the error names (``messages[3].priority``)."""
    match = _MESSAGE_FIELD.match(error.field)
    if match is None or int(match.group(1)) >= size:
        return None
    return int(match.group(1))


def _without_index(error: InvalidArgument) -> InvalidArgument:
    """The error as its own message sees it: ``priority``, not ``messages[3].priority``."""
    details = error.details()
    details["field"] = _MESSAGE_FIELD.sub("", error.field, count=1) or "message"
    return type(error)(**details)


def _fail(batch: list[_Item], error: BaseException) -> None:
    for _, future, _ in batch:
        future.set_exception(error)
