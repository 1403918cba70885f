"""Group commit: requests that arrive together become one Raft entry.

Writes wait in ``pending``; whenever fewer than ``max_in_flight`` batches are
in the log, everything pending (up to ``max_batch_bytes``) leaves as one
batch stamped with the leader's clock. Under light load a batch holds one
request and leaves at once; under heavy load batches grow by themselves, so
one journal fsync and one Raft round serve many requests.

Results come back on the Raft thread and are handed to the event loop. A
batch whose callback never comes (PySyncObj drops some) fails after
``timeout`` seconds with ``Unavailable``: its outcome is unknown, and the
client retries it with the same dedup key.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

import msgpack

from kokaq.core import KokaqError, NotLeader, Unavailable

__all__ = ["Committer", "LogWriter", "new_ids", "wall_clock_ms"]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def new_ids(count: int) -> list[str]:
    """``count`` fresh message or lock ids (96 random bits, hex), from one read
    of the system's random source."""
    digits = secrets.token_hex(12 * count)
    return [digits[i : i + 24] for i in range(0, 24 * count, 24)]


class LogWriter(Protocol):
    """What the committer needs of the replica (``ReplicatedEngine``)."""

    def submit(self, payload: bytes, callback: Callable[[Any, int], None]) -> None: ...

    def is_leader(self) -> bool: ...

    def leader_hint(self) -> str | None: ...


class _Batch:
    __slots__ = ("futures", "names", "started")

    def __init__(self, futures: list[asyncio.Future[Any]], names: list[str]) -> None:
        self.futures = futures
        self.names = names
        self.started = time.monotonic()


class Committer:
    def __init__(
        self,
        log: LogWriter,
        *,
        max_in_flight: int = 4,
        max_batch_bytes: int = 4 * 1024 * 1024,
        timeout: float = 10.0,
        on_applied: Callable[[list[str]], None] | None = None,
    ) -> None:
        self._log = log
        self._on_applied = on_applied  # told the operation names of each applied batch
        #: Called as a flush begins; it may ``propose`` writes to ride along
        #: with those pending (the worker sessions' leases of new jobs).
        self.before_flush: Callable[[], None] | None = None
        self._loop = asyncio.get_running_loop()
        self._pending: list[tuple[list[Any], asyncio.Future[Any]]] = []
        self._in_flight: set[_Batch] = set()
        self._max_in_flight = max_in_flight
        self._max_batch_bytes = max_batch_bytes
        self._timeout = timeout
        self._flush_scheduled = False
        self._closed = False
        self._paused = False
        self.batches = 0  # batches proposed (Raft entries), for the metrics
        self.proposed: Counter[str] = Counter()  # operations proposed, by name

    async def write(self, name: str, request: bytes, ids: list[str]) -> Any:
        """Replicate one operation; its result, or raise its KokaqError."""
        result = await self.propose(name, request, ids)
        if isinstance(result, KokaqError):
            raise result
        return result

    def propose(self, name: str, request: bytes, ids: list[str]) -> asyncio.Future[Any]:
        """Queue one operation behind those pending (so the log applies it
        after them); its future's result is the outcome or the KokaqError."""
        future: asyncio.Future[Any] = self._loop.create_future()
        if self._closed:
            future.set_result(Unavailable("the node is shutting down"))
            return future
        self._pending.append(([name, request, ids], future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return future

    def pause(self) -> None:
        """Hold new writes back (a leadership transfer lets the target catch up)."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        if self._pending and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._paused:
            return
        if self.before_flush is not None:
            self._flush_scheduled = True  # what it proposes leaves in this flush
            self.before_flush()
            self._flush_scheduled = False
        while self._pending and len(self._in_flight) < self._max_in_flight:
            if not self._log.is_leader():
                self._fail_pending(NotLeader(self._log.leader_hint()))
                return
            count, size = 0, 0
            for operation, _ in self._pending:
                if count and size >= self._max_batch_bytes:
                    break
                count += 1
                size += len(operation[1]) + 64
            taken, self._pending = self._pending[:count], self._pending[count:]
            operations = [operation for operation, _ in taken]
            futures = [future for _, future in taken]
            batch = _Batch(futures, [operation[0] for operation in operations])
            self._in_flight.add(batch)
            payload = msgpack.packb([wall_clock_ms(), operations])
            self.batches += 1
            self.proposed.update(batch.names)
            self._log.submit(payload, self._callback(batch))

    def _callback(self, batch: _Batch) -> Callable[[Any, int], None]:
        def returned(results: Any, error: int) -> None:
            # Raft thread: hand the outcome to the event loop.
            self._loop.call_soon_threadsafe(self._settle, batch, results, error)

        return returned

    def _settle(self, batch: _Batch, results: Any, error: int) -> None:
        if batch not in self._in_flight:
            return  # already failed by the timeout or a snapshot install
        self._in_flight.discard(batch)
        if error or not isinstance(results, list) or len(results) != len(batch.futures):
            outcome: Any = Unavailable(
                f"the Raft log did not confirm the write (reason {error}); "
                "it may still apply: retry with the same dedup key"
            )
            results = [outcome] * len(batch.futures)
        for future, result in zip(batch.futures, results, strict=True):
            if not future.done():
                future.set_result(result)
        if self._on_applied is not None and not error:
            self._on_applied(batch.names)
        if self._pending and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _fail_pending(self, error: KokaqError) -> None:
        pending, self._pending = self._pending, []
        for _, future in pending:
            if not future.done():
                future.set_result(error)

    def fail_in_flight(self, reason: str) -> None:
        """Fail every batch in the log with an unknown outcome (thread-safe)."""
        self._loop.call_soon_threadsafe(self._fail_batches, list(self._in_flight), reason)

    def _fail_batches(self, batches: list[_Batch], reason: str) -> None:
        for batch in batches:
            if batch in self._in_flight:
                self._settle_with(batch, Unavailable(reason))

    def _settle_with(self, batch: _Batch, error: KokaqError) -> None:
        self._in_flight.discard(batch)
        for future in batch.futures:
            if not future.done():
                future.set_result(error)
        if self._pending and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def expire(self) -> int:
        """Fail the batches older than the timeout; how many. Call it periodically."""
        now = time.monotonic()
        late = [b for b in self._in_flight if now - b.started > self._timeout]
        for batch in late:
            self._settle_with(
                batch,
                Unavailable(
                    f"no answer from the Raft log within {self._timeout:g} s; "
                    "the write may still apply: retry with the same dedup key"
                ),
            )
        return len(late)

    @property
    def idle(self) -> bool:
        return not self._pending and not self._in_flight

    def close(self) -> None:
        """Take no more writes; those pending fail, those in flight finish."""
        self._closed = True
        self._fail_pending(Unavailable("the node is shutting down"))
