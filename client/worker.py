"""``Worker``: runs job handlers on jobs the node pushes over a stream.

    worker = Worker("127.0.0.1:9000", queues={"high": 5, "low": 1}, concurrency=8)

    @worker.handler("email_send")
    def send(job: Job) -> None:       # or an ``async def``
        smtp.send(**job.payload)

    worker.run()                      # until SIGTERM / SIGINT

The node leases jobs to the worker as they become ready, never more than its
credit (``prefetch``, by default twice ``concurrency``) unsettled at once;
each settle gives one back. A handler that returns frees its place for the
next job at once: the settle travels in the background (in batches), so up to
``concurrency`` handlers run while earlier jobs' settles are on their way.
Jobs and settles share one ``Workers.Work`` stream (with a node that has no
Work, a ``Lease`` stream and ``SettleMany`` calls).
While a handler runs, its lease is refreshed every third of the visibility
timeout, so a long job keeps it. A handler that returns acks the job, with
what it returned as the job's result (bytes as they are, anything else as
JSON; None: no result; a value JSON cannot hold, or one larger than the
queue's max payload, fails the job instead); one that raises nacks it with
``"Type: message"`` as the job's ``last_error`` (the queue's backoff decides
when it runs again, and its max deliveries when it goes to the dead-letter
queue). A job whose type has no handler is nacked the same way. A handler
that runs past its timeout (``job_timeout``, or the
handler's own ``timeout``) is nacked with the reason ``handler_timeout``: an
``async def`` handler is cancelled; a plain function cannot be stopped, so
its thread, and its place among the ``concurrency``, stay taken until it
returns (its result is then ignored) — unless it checks ``job.cancelled``,
which turns true then (and when a stopping worker's grace period runs out).

Stopping (SIGTERM, ``stop()``): take no more jobs, release the ones not
started, let running handlers finish within ``grace`` seconds, release the
jobs of those that did not, and return. Released jobs keep their attempts.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import inspect
import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc

from kokaq.client.calls import queue_weights
from kokaq.client.transport import (
    END_LEASE,
    SETTLE_MANY,
    AsyncGrpcTransport,
    RetryPolicy,
    error_of_rpc,
)
from kokaq.core import (
    MAX_BATCH,
    FailureReason,
    InvalidArgument,
    KokaqError,
    LockLost,
    MessageView,
    PermissionDenied,
    Unauthenticated,
)
from kokaq.protocol import convert as cv
from kokaq.protocol.errors import error_from_detail
from kokaq.protocol.jobs import job_payload, job_result, progress_text
from kokaq.protocol.v1 import kokaq_pb2 as pb

__all__ = ["Handler", "Job", "Worker", "WorkerTransport"]

log = logging.getLogger("kokaq.worker")

_FATAL = (Unauthenticated, PermissionDenied, InvalidArgument)
_MAX_ERROR = 4000
_MAX_TIMEOUT = 7 * 24 * 3600.0  # a week: past that, say no limit (None)
_HEARTBEAT_SECONDS = 0.2  # how often running jobs are looked at (refreshes, progress)
_STEADY_SECONDS = 1.0  # a stream that held this long (or sent jobs) was not failing at once
_END_LEASE_SECONDS = 5.0  # a stopping worker does not wait longer for a node that is gone
_SETTLE_ANSWER_SECONDS = 30.0  # as long as a SettleMany call may take


@dataclass(frozen=True, slots=True)
class Job:
    """One leased job, as a handler sees it."""

    id: str
    type: str | None
    payload: Any  # the JSON value for JSON jobs, else the bytes
    attempts: int  # deliveries so far, this one included
    message: MessageView
    # The worker's record of the running job (progress, cancelled), not for handlers.
    _lease: _Lease | None = field(default=None, repr=False, compare=False)

    @property
    def queue(self) -> str:
        return self.message.queue

    @property
    def namespace(self) -> str:
        return self.message.namespace

    def progress(self, value: Any) -> None:
        """Say how far this job is: any JSON value (``40``, ``{"step": 2,
        "of": 5}``), shown on the job (``GET /v1/jobs/{id}``, the dashboard)
        until it runs again. Safe from any thread and cheap to call often:
        the latest value goes to the node with the job's next heartbeat, a
        fifth of a second later at most. Raises InvalidArgument (``progress``)
        for a value JSON cannot hold or one over 4,096 bytes."""
        text = progress_text(value)
        if self._lease is not None:
            self._lease.report(text)

    @property
    def cancelled(self) -> bool:
        """True once the handler's time is up: its timeout passed, or the
        worker is stopping and its grace period ran out. The job is nacked
        or released already; a plain-function handler that checks this can
        stop early and free its place (what it returns is ignored)."""
        return self._lease is not None and self._lease.cancelled


Handler = Callable[[Job], Any]


def job_of(message: MessageView, lease: _Lease | None = None) -> Job:
    job_type = message.headers.type if message.headers else None
    payload = job_payload(message)
    return Job(message.id, job_type, payload, message.deliveries, message, lease)


def _result_of(returned: Any) -> bytes | None:
    try:
        return job_result(returned)
    except (TypeError, ValueError) as error:
        raise TypeError(f"the handler's result is not JSON: {error}") from None


def _check_timeout(field: str, seconds: float | None) -> None:
    if seconds is not None and not 0 < seconds <= _MAX_TIMEOUT:
        raise InvalidArgument(field, f"must be more than 0 and at most {_MAX_TIMEOUT:g} seconds")


def error_summary(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return text[:_MAX_ERROR]


class WorkerTransport(Protocol):
    """What a worker needs of a transport: ``AsyncGrpcTransport``, or the
    in-process one of ``kokaq.client.testing``. One that also has
    ``work_stream()`` (the gRPC one) is used through Work streams."""

    async def call(self, name: str, request: Any) -> Any: ...

    def lease_stream(self, request: pb.LeaseRequest) -> Any: ...

    def failed(self, error: KokaqError) -> None: ...

    async def close(self) -> None: ...


class _HandlerThreads:
    """Threads that run blocking handlers, handing results back to the loop in
    batches: one loop wake-up for all results ready together, where
    ``run_in_executor`` costs a concurrent Future, a Condition and a wake-up
    per job (measured: more CPU than a no-op job's whole server side)."""

    def __init__(self, count: int, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._jobs: queue.SimpleQueue[tuple[Handler, Job, asyncio.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._done: collections.deque[tuple[asyncio.Future[Any], Any, BaseException | None]] = (
            collections.deque()
        )
        self._wake_pending = False
        self._wake_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, name=f"kokaq-handler-{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, handler: Handler, job: Job) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        self._jobs.put((handler, job, future))
        return future

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            handler, job, future = item
            try:
                outcome: tuple[Any, BaseException | None] = (handler(job), None)
            except BaseException as error:  # handed to the awaiting coroutine
                outcome = (None, error)
            self._done.append((future, *outcome))
            with self._wake_lock:
                if self._wake_pending:
                    continue
                self._wake_pending = True
            self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._wake_lock:
            self._wake_pending = False
        while self._done:
            future, result, error = self._done.popleft()
            if future.done():
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    def stop(self) -> None:
        """Let the threads end after their current job (daemons: a stuck
        handler does not keep the process alive)."""
        for _ in self._threads:
            self._jobs.put(None)


async def _run_handler(
    pool: _HandlerThreads,
    handler: Handler,
    job: Job,
    threads: list[asyncio.Future[Any]] | None = None,
) -> Any:
    """Run ``handler`` on ``job`` and answer what it returned: an ``async
    def`` in the loop, a plain function on a handler thread. Given
    ``threads``, the thread's future goes there and is awaited shielded: a
    timeout stops the wait, not the future."""
    if inspect.iscoroutinefunction(handler):
        return await handler(job)
    thread = pool.run(handler, job)
    if threads is None:
        result = await thread
    else:
        threads.append(thread)
        result = await asyncio.shield(thread)
    if inspect.isawaitable(result):
        result = await result
    return result


class _Lease:
    __slots__ = ("cancelled", "lease_ms", "message", "next_refresh", "progress")

    def __init__(self, message: MessageView, lease_ms: int, next_refresh: float) -> None:
        self.message = message
        self.lease_ms = lease_ms
        self.next_refresh = next_refresh  # time.monotonic()
        self.progress: str | None = None  # reported, not sent yet
        self.cancelled = False  # its time is up (Job.cancelled)

    def report(self, progress: str) -> None:
        """From the handler, in any thread: the latest report wins."""
        with _PROGRESS_LOCK:
            self.progress = progress

    def take_progress(self) -> str | None:
        if self.progress is None:  # the common case: no lock needed to see it
            return None
        with _PROGRESS_LOCK:
            progress, self.progress = self.progress, None
        return progress


_PROGRESS_LOCK = threading.Lock()  # one for all leases: taken briefly, rarely contended


class _WorkStream:
    """A ``Workers.Work`` call: its session, its settles awaiting answers
    (matched by ``settle_id``), and whether the node has said ``ended``."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.session = ""
        self.ended = asyncio.Event()  # the node leases nothing more on it
        self._writing = asyncio.Lock()
        self._answers: dict[int, asyncio.Future[list[pb.SettleOutcome] | None]] = {}
        self._last_id = 0
        self._broken = False

    async def write(self, request: pb.WorkRequest) -> bool:
        """Send ``request``; False if the stream is gone."""
        if self._broken:
            return False
        try:
            async with self._writing:
                await self.call.write(request)
        except (grpc.RpcError, asyncio.InvalidStateError):  # it ended, or broke
            return False
        return True

    async def settle(self, requests: list[pb.SettleRequest]) -> list[pb.SettleOutcome] | None:
        """The outcomes of ``requests``, or None if the stream broke first."""
        self._last_id += 1
        answer: asyncio.Future[list[pb.SettleOutcome] | None]
        answer = self._answers[self._last_id] = asyncio.get_running_loop().create_future()
        settle_id = self._last_id
        if await self.write(pb.WorkRequest(settle_id=settle_id, settles=requests)):
            try:
                return await asyncio.wait_for(answer, _SETTLE_ANSWER_SECONDS)
            except TimeoutError:  # as a call would time out: the caller sends them again
                log.warning(
                    "settles unanswered on the Work stream for %.0f s", _SETTLE_ANSWER_SECONDS
                )
        self._answers.pop(settle_id, None)
        return None

    def answered(self, event: pb.WorkEvent) -> None:
        answer = self._answers.pop(event.settle_id, None)
        if answer is not None and not answer.done():
            answer.set_result(list(event.settled))

    async def close(self) -> None:
        """End the worker's side: the node answers what it received, then ends."""
        if not self._broken:
            with contextlib.suppress(grpc.RpcError, asyncio.InvalidStateError):
                async with self._writing:
                    await self.call.done_writing()

    def broke(self) -> None:
        """The stream is over: what it did not answer goes by SettleMany."""
        self._broken = True
        self.ended.set()
        for answer in self._answers.values():
            if not answer.done():
                answer.set_result(None)
        self._answers.clear()


class _Settler:
    """Sends settles in batches: while one ``SettleMany`` is out, the next
    ones gather (up to ``batch_size``), as the ``Producer`` does for enqueues."""

    def __init__(self, transport: WorkerTransport, batch_size: int = 500) -> None:
        self._transport = transport
        self._batch_size = batch_size
        self.stream: _WorkStream | None = None  # the Work stream open, if any
        self._pending: list[tuple[pb.SettleRequest, asyncio.Future[str]]] = []
        self._unanswered: set[asyncio.Future[str]] = set()
        self._wake = asyncio.Event()

    def settle(self, request: pb.SettleRequest) -> asyncio.Future[str]:
        """Queue a settle; its future's result is the outcome ("acked",
        "released", a nack's outcome), or its exception the job's error."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        self._unanswered.add(future)
        future.add_done_callback(self._unanswered.discard)
        self._wake.set()
        return future

    async def drained(self) -> None:
        """Wait until every settle queued so far has its answer."""
        if self._unanswered:
            await asyncio.wait(list(self._unanswered))

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[: self._batch_size]
                del self._pending[: self._batch_size]
                by_session: dict[str, list[tuple[pb.SettleRequest, asyncio.Future[str]]]] = {}
                for item in batch:
                    by_session.setdefault(item[0].session_id, []).append(item)
                for session, items in by_session.items():
                    await self._send(session, items)

    async def _send(
        self, session: str, items: list[tuple[pb.SettleRequest, asyncio.Future[str]]]
    ) -> None:
        requests = [request for request, _ in items]
        results: list[pb.SettleOutcome] | None = None
        stream = self.stream
        if stream is not None and stream.session == session:
            # On the stream the jobs came by; if it breaks before answering,
            # by a call (a settle repeated answers as it did).
            results = await stream.settle(requests)
        if results is None:
            try:
                call = pb.SettleManyRequest(session_id=session, items=requests)
                results = list((await self._transport.call(SETTLE_MANY, call)).results)
            except KokaqError as error:
                for _, future in items:
                    if not future.done():
                        future.set_exception(error)
                return
        for (_, future), result in zip(items, results, strict=True):
            if future.done():
                continue
            if result.error.type:
                future.set_exception(error_from_detail(result.error))
            else:
                future.set_result(result.outcome)


class Worker:
    def __init__(
        self,
        server: str | Sequence[str] = "127.0.0.1:9000",
        *,
        namespace: str = "default",
        queues: Sequence[str] | Mapping[str, int] = ("default",),
        concurrency: int = 8,
        prefetch: int | None = None,
        api_key: str | None = None,
        worker_id: str | None = None,
        visibility_timeout_ms: int | None = None,
        grace: float = 30.0,
        job_timeout: float | None = None,
        transport: WorkerTransport | None = None,
    ) -> None:
        if not 1 <= concurrency <= 1000:
            raise InvalidArgument("concurrency", "must be 1 to 1000")
        if prefetch is not None and not 1 <= prefetch <= 1000:
            raise InvalidArgument("prefetch", "must be 1 to 1000")
        if grace < 0:
            raise InvalidArgument("grace", "must be 0 or more seconds")
        _check_timeout("job_timeout", job_timeout)
        weights = queues if isinstance(queues, Mapping) else dict.fromkeys(queues, 1)
        self.namespace = namespace
        self.queues = queue_weights(weights)
        self.concurrency = concurrency
        # Twice the handlers: the next jobs arrive while the last ones' settles travel.
        self.prefetch = prefetch or min(MAX_BATCH, 2 * concurrency)
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.visibility_timeout_ms = visibility_timeout_ms
        self.grace = grace
        self.job_timeout = job_timeout  # seconds a handler may run, unless its own says
        self._server = server
        self._api_key = api_key
        self._transport = transport
        self._handlers: dict[str, Handler] = {}
        self._timeouts: dict[str, float] = {}  # a handler's own timeout, by job type
        self._stopping: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._leases: dict[str, _Lease] = {}  # running jobs, by id
        self._session = ""  # the lease stream's session, while one is open
        self._received = 0  # jobs the node sent
        self.processed = 0  # jobs settled, for tests and logs
        self.failed = 0

    # -- registration ------------------------------------------------------------------

    def handler(
        self, job_type: str, *, timeout: float | None = None
    ) -> Callable[[Handler], Handler]:
        """Register the function that runs jobs of ``job_type``; ``timeout``
        (seconds) overrides the worker's ``job_timeout`` for them."""
        _check_timeout("timeout", timeout)

        def register(function: Handler) -> Handler:
            if job_type in self._handlers:
                raise InvalidArgument("job_type", f"{job_type!r} has a handler already")
            self._handlers[job_type] = function
            if timeout is not None:
                self._timeouts[job_type] = timeout
            return function

        return register

    @property
    def handlers(self) -> Mapping[str, Handler]:
        return dict(self._handlers)

    @property
    def handler_timeouts(self) -> Mapping[str, float]:
        """The timeouts handlers were registered with, by job type."""
        return dict(self._timeouts)

    def timeout_of(self, job_type: str | None) -> float | None:
        """Seconds a handler of ``job_type`` may run (None: no limit)."""
        return self._timeouts.get(job_type or "", self.job_timeout)

    @property
    def job_types(self) -> list[str]:
        return sorted(self._handlers)

    # -- running -------------------------------------------------------------------------

    def run(self) -> None:
        """Run until SIGTERM or SIGINT, then stop gracefully."""

        async def main() -> None:
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            await self.run_async(stop)

        asyncio.run(main())

    def stop(self) -> None:
        """Ask a running worker to stop (thread-safe)."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    async def run_async(self, stop: asyncio.Event | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = stop or asyncio.Event()
        transport: WorkerTransport = self._transport or AsyncGrpcTransport(
            self._server, api_key=self._api_key, retry=RetryPolicy(timeout=30.0)
        )
        pool = _HandlerThreads(self.concurrency, self._loop)
        inbox: asyncio.Queue[tuple[str, MessageView] | None] = asyncio.Queue()
        running: dict[asyncio.Task[None], tuple[str, MessageView]] = {}
        runners = [
            asyncio.create_task(self._runner(pool, inbox, running)) for _ in range(self.concurrency)
        ]
        self._settler = _Settler(transport)
        self._calls = transport
        settling = asyncio.create_task(self._settler.run())
        heartbeats = asyncio.create_task(self._heartbeats(transport))
        feeder = asyncio.create_task(self._feed(transport, inbox))
        stopped = asyncio.create_task(self._stopping.wait())
        try:
            done, _ = await asyncio.wait({feeder, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if feeder in done:
                feeder.result()  # a fatal error (a refused key, say) ends the worker
        finally:
            self._stopping.set()
            stopped.cancel()
            await self._end_lease(transport, feeder)
            await self._drain(inbox, runners, running)
            await self._settler.drained()
            await self._close_stream(feeder)
            settling.cancel()
            heartbeats.cancel()
            pool.stop()
            if self._transport is None:
                await transport.close()

    async def _end_lease(self, transport: WorkerTransport, feeder: asyncio.Task[None]) -> None:
        """Ask the node to lease nothing more, and read what it leased for this
        worker meanwhile: those jobs are given back (the runners release what
        arrives once stopping), not left to wait out their lease. On a Work
        stream that is ``end``, answered by ``ended`` (the stream stays open
        for the settles to come); on a Lease stream, ``EndLease``, answered by
        the stream's end. A node that does not answer within
        ``_END_LEASE_SECONDS``, or whose jobs do not all come within the grace
        period, is left: ``_close_stream`` cancels the stream."""
        stream = self._settler.stream
        if feeder.done():
            return
        if stream is not None:
            ended = asyncio.ensure_future(stream.ended.wait())
            try:
                if await stream.write(pb.WorkRequest(end=True)):
                    await asyncio.wait(
                        {feeder, ended},
                        timeout=max(self.grace, 1.0),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
            finally:
                ended.cancel()
        elif self._session:
            request = pb.EndLeaseRequest(session_id=self._session)
            try:
                await asyncio.wait_for(transport.call(END_LEASE, request), _END_LEASE_SECONDS)
            except (KokaqError, grpc.RpcError, TimeoutError) as error:
                log.info("ending the lease stream: %s", getattr(error, "message", repr(error)))
            else:
                await asyncio.wait({feeder}, timeout=max(self.grace, 1.0))

    async def _close_stream(self, feeder: asyncio.Task[None]) -> None:
        """Every settle answered: close the Work stream (the node ends it), or
        cancel whatever stream is left."""
        stream = self._settler.stream
        if stream is not None and not feeder.done():
            await stream.close()
            await asyncio.wait({feeder}, timeout=_END_LEASE_SECONDS)
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)

    async def _drain(
        self,
        inbox: asyncio.Queue[tuple[str, MessageView] | None],
        runners: list[asyncio.Task[None]],
        running: dict[asyncio.Task[None], tuple[str, MessageView]],
    ) -> None:
        """Release what waits, let what runs finish within the grace period,
        then release what is still running."""
        while not inbox.empty():
            item = inbox.get_nowait()
            if item is not None:
                await self._release(*item)
        for _ in runners:
            inbox.put_nowait(None)
        _, late = await asyncio.wait(runners, timeout=self.grace) if runners else ((), ())
        for task in late:
            item = running.get(task)
            if item is not None and (lease := self._leases.get(item[1].id)) is not None:
                lease.cancelled = True  # a plain function that looks can stop
            task.cancel()
            if item is not None:
                await self._release(*item)

    async def _feed(
        self,
        transport: WorkerTransport,
        inbox: asyncio.Queue[tuple[str, MessageView] | None],
    ) -> None:
        """Hold a Work stream open (a Lease stream if the node or the transport
        has no Work), reconnecting (to the leader) when it breaks."""
        request = pb.LeaseRequest(
            namespace=self.namespace,
            queues=[pb.QueueWeight(queue=q, weight=w) for q, w in self.queues],
            credit=self.prefetch,
            concurrency=min(self.concurrency, self.prefetch),
            visibility_timeout_ms=self.visibility_timeout_ms,
            worker_id=self.worker_id,
        )
        open_work = getattr(transport, "work_stream", None)
        lease_only = False  # the node in use answered Work with UNIMPLEMENTED
        attempt = 0
        assert self._stopping is not None
        while not self._stopping.is_set():
            self._session = ""
            work = None if lease_only else open_work
            lease_only = False  # the next stream tries Work again: the node may be upgraded
            opened, received = time.monotonic(), self._received
            try:
                if work is not None:
                    await self._work(work(), request, inbox)
                else:
                    await self._lease(transport, request, inbox)
                # The node ended the stream: asked to, or it is stopping.
                error: KokaqError | None = None
            except grpc.RpcError as failure:
                if failure.code() == grpc.StatusCode.UNIMPLEMENTED and work is not None:
                    log.info("the node has no Work stream: leasing over Lease")
                    lease_only = True
                    continue
                error = error_of_rpc(failure)
            except KokaqError as failure:  # in process
                error = failure
            held = time.monotonic() - opened >= _STEADY_SECONDS or self._received > received
            if self._session and held:
                attempt = 0  # it opened and worked: the next one waits from the shortest delay
            self._session = ""
            if isinstance(error, _FATAL):
                raise error from None
            if self._stopping.is_set():
                return
            if error is not None:
                log.warning("lease stream: %s; reconnecting", error.message)
                transport.failed(error)
            await asyncio.sleep(min(2.0, 0.05 * 2**attempt))
            attempt = min(attempt + 1, 6)

    async def _work(
        self,
        call: Any,
        request: pb.LeaseRequest,
        inbox: asyncio.Queue[tuple[str, MessageView] | None],
    ) -> None:
        """One Work stream: jobs into the inbox, settles answered, until it ends."""
        stream = _WorkStream(call)
        self._settler.stream = stream
        try:
            await stream.write(pb.WorkRequest(lease=request))  # if it failed, the call says why
            async for event in call:
                if event.session_id:
                    stream.session = self._opened(event.session_id)
                if event.waiting:
                    self._waiting(event.waiting)
                self._received += len(event.jobs)
                for message in event.jobs:
                    inbox.put_nowait((stream.session, cv.message_from_proto(message)))
                if event.settle_id:
                    stream.answered(event)
                if event.ended:
                    stream.ended.set()
        finally:
            stream.broke()
            if self._settler.stream is stream:
                self._settler.stream = None

    async def _lease(
        self,
        transport: WorkerTransport,
        request: pb.LeaseRequest,
        inbox: asyncio.Queue[tuple[str, MessageView] | None],
    ) -> None:
        """One Lease stream (settles go by SettleMany), until it ends."""
        session = ""
        async for event in transport.lease_stream(request):
            if event.session_id:
                session = self._opened(event.session_id)
            if event.waiting:
                self._waiting(event.waiting)
            self._received += len(event.jobs)
            for message in event.jobs:
                inbox.put_nowait((session, cv.message_from_proto(message)))

    def _waiting(self, why: str) -> None:
        log.warning("worker %s waits: %s (the first job submitted to it creates it)",
                    self.worker_id, why)  # fmt: skip

    def _opened(self, session: str) -> str:
        self._session = session
        log.info("worker %s leasing from %s", self.worker_id, self.queues)
        return session

    async def _runner(
        self,
        pool: _HandlerThreads,
        inbox: asyncio.Queue[tuple[str, MessageView] | None],
        running: dict[asyncio.Task[None], tuple[str, MessageView]],
    ) -> None:
        me = asyncio.current_task()
        assert me is not None
        while (item := await inbox.get()) is not None:
            assert self._stopping is not None
            if self._stopping.is_set():
                await self._release(*item)
                continue
            running[me] = item
            try:
                straggler = await self._process(pool, *item)
            finally:
                running.pop(me, None)
            if straggler is not None:  # settled, but its thread is busy until it returns
                await asyncio.wait({straggler})

    async def _process(
        self,
        pool: _HandlerThreads,
        session: str,
        message: MessageView,
    ) -> asyncio.Future[Any] | None:
        """Run one job and send its settle; answer a timed-out plain
        function's future (its thread runs on), else None."""
        left_ms = (message.lock_deadline or 0) - int(time.time() * 1000)
        if left_ms <= 0:
            # It waited here past its lease: the node has taken it back, and
            # another worker may be running it. Its settle would fail anyway.
            log.warning("job %s waited past its lease; not run here", message.id)
            return None
        lease_ms = max(1_000, left_ms)
        lease = _Lease(message, lease_ms, time.monotonic() + lease_ms / 3000)
        self._leases[message.id] = lease
        job = job_of(message, lease)
        handler = self._handlers.get(job.type or "")
        timeout = self.timeout_of(job.type)
        error: BaseException | None = None
        result: bytes | None = None
        reason = FailureReason.PROCESSING_ERROR
        limit = None if timeout is None else asyncio.timeout(timeout)
        threads: list[asyncio.Future[Any]] = []  # a plain function's, if it ran
        try:
            if handler is None:
                reason = FailureReason.UNAUTHORIZED_HANDLER
                raise LookupError(f"no handler for job type {job.type!r} on {self.worker_id}")
            if limit is None:  # the common case, without a timeout's cost
                returned = await _run_handler(pool, handler, job)
            else:
                async with limit:
                    returned = await _run_handler(pool, handler, job, threads)
            result = None if returned is None else _result_of(returned)
        except Exception as failure:  # the handler's failure is the job's, not ours
            error = failure
        finally:
            self._leases.pop(message.id, None)
        if (progress := lease.take_progress()) is not None:
            # Reported since the last heartbeat: it goes before the settle.
            await self._refresh(self._calls, lease, progress)
        if limit is not None and limit.expired():
            lease.cancelled = True
            reason = FailureReason.HANDLER_TIMEOUT
            error = TimeoutError(f"handler ran past its {timeout:g} s timeout")
            log.warning("job %s: %s", message.id, error)
        if error is None:
            settle = pb.SettleRequest(session_id=session, ack=cv.lock_ref(message), result=result)
            self._settle(settle, message)  # the runner takes its next job meanwhile
        else:
            self._fail(session, message, reason, error_summary(error))
        return next((thread for thread in threads if not thread.done()), None)

    async def _heartbeats(self, transport: WorkerTransport) -> None:
        """Refresh each running job's lease every third of its length, and send
        the progress its handler reported since the last look, which refreshes
        it too (one loop for all of them: a task per job would cost more than a
        no-op job)."""
        while True:
            await asyncio.sleep(_HEARTBEAT_SECONDS)
            now = time.monotonic()
            beats = []
            for lease in list(self._leases.values()):
                progress = lease.take_progress()
                if progress is not None or lease.next_refresh <= now:
                    lease.next_refresh = now + lease.lease_ms / 3000
                    beats.append(self._refresh(transport, lease, progress))
            await asyncio.gather(*beats)

    async def _refresh(
        self, transport: WorkerTransport, lease: _Lease, progress: str | None
    ) -> None:
        message = lease.message
        try:
            if progress is None:
                await transport.call("Refresh", cv.lock_ref(message))
            else:
                report = pb.ProgressRequest(lock=cv.lock_ref(message), progress=progress)
                await transport.call("ReportProgress", report)
        except LockLost:
            if self._leases.pop(message.id, None) is not None:  # not settled meanwhile
                log.warning("job %s lost its lease; another worker may run it", message.id)
        except KokaqError as error:
            log.warning("job %s: lease refresh failed: %s", message.id, error.message)

    def _fail(self, session: str, message: MessageView, reason: FailureReason, error: str) -> None:
        self.failed += 1
        nack = pb.NackRequest(
            lock=cv.lock_ref(message), reason=cv.failure_reason_to_proto(reason), error=error
        )
        self._settle(pb.SettleRequest(session_id=session, nack=nack), message)

    def _settle(self, settle: pb.SettleRequest, message: MessageView) -> asyncio.Future[str]:
        """Send a settle in the background; its answer is counted or logged."""
        future = self._settler.settle(settle)
        future.add_done_callback(functools.partial(self._settled, settle, message))
        return future

    def _settled(
        self, settle: pb.SettleRequest, message: MessageView, future: asyncio.Future[str]
    ) -> None:
        error = future.exception()
        if error is None:
            self.processed += 1
        elif isinstance(error, InvalidArgument) and error.field == "result":
            # The node kept the lease and refused the result (too large, say):
            # the job failed, and says why.
            reason = FailureReason.PROCESSING_ERROR
            self._fail(settle.session_id, message, reason, f"result refused: {error.message}")
        elif isinstance(error, LockLost):
            log.warning("job %s was settled or its lease ran out before the answer", message.id)
        else:
            detail = error.message if isinstance(error, KokaqError) else repr(error)
            log.error("job %s: settling failed: %s", message.id, detail)

    async def _release(self, session: str, message: MessageView) -> None:
        release = pb.ReleaseRequest(lock=cv.lock_ref(message))
        settle = pb.SettleRequest(session_id=session, release=release)
        await asyncio.wait([self._settle(settle, message)])
