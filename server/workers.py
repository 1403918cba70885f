"""``kokaq.v1.Workers``: jobs pushed to workers over a long-lived stream.

A worker opens ``Lease`` with a credit (its prefetch window). The node leases
up to that many jobs for it (a ``Dequeue`` through the log, like any other)
and sends them as they become ready; when the worker has all it may hold,
the node waits for ``Settle`` calls to give credit back. With credit free and
nothing ready, the session sleeps until the log applies something that can
make a job ready — an enqueue, a nack, a release, a redrive, a tick that
promoted delayed jobs or ended leases — so no one polls. (A session also
looks again every few seconds, and forgets leases whose deadline passed:
their jobs went back to the queue, so their credit is free. A lease the
worker's heartbeats refreshed is not forgotten: the session asks the engine.)

A job enqueued while sessions wait for it does not even wait for that: the
node proposes their Dequeues right behind the enqueue, in the same flush of
the group commit, so the job is leased in the Raft entry that adds it — one
round through the log instead of two. The jobs of one flush go to as few
sessions as have idle handlers for them (``arrival_shares``).

A worker that stops calls ``EndLease``: the node leases nothing more for the
session, sends what it already leased (the worker gives those back), and ends
the stream. A stream that breaks instead (the worker died, the network) gives
back at once the jobs of the Dequeues still in flight for it, which it never
sent; those it sent wait for their lease to run out, as the worker may have
them. On shutdown every session ends its stream cleanly (status OK); the
worker reconnects to another node, or waits for this one to come back.

``Work`` is ``Lease`` and ``SettleMany`` on one bidirectional stream, what the
SDK's worker uses: the same session and jobs, with settles sent on the stream
and answered on it (a message on an open stream instead of a call each), and
``end`` for ``EndLease``, answered by ``ended`` while settles still flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from kokaq.core import MAX_BATCH, InvalidArgument, KokaqError, NotFound, Unavailable
from kokaq.protocol import convert as cv
from kokaq.protocol.errors import error_detail
from kokaq.protocol.v1 import kokaq_pb2 as pb
from kokaq.server.committer import new_ids, wall_clock_ms
from kokaq.server.gateway import Gateway
from kokaq.server.operations import ids_needed
from kokaq.server.replication import TICK
from kokaq.server.service import Observe, abort_with

__all__ = ["WAKING_OPERATIONS", "WorkerSessions", "Wakeup"]

log = logging.getLogger("kokaq.server.workers")

#: Operations whose application can make a job ready.
WAKING_OPERATIONS = frozenset(
    {
        "Enqueue",
        "EnqueueBatch",
        "Nack",
        "Release",
        "RedriveDead",
        "UpdateQueue",
        "ResumeQueue",
        "FireSchedule",
        "TriggerSchedule",
        TICK,
    }
)
_RECHECK_SECONDS = 2.0
_NEVER = 2**63  # a time after every lease deadline


class Wakeup:
    """A broadcast: take ``current()`` before looking for work, then wait on
    it; a ``notify()`` in between is never missed."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event:
        return self._event

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    def applied(self, names: list[str]) -> None:
        if not WAKING_OPERATIONS.isdisjoint(names):
            self.notify()


# (namespace, queue) -> how many it would dispatch now (none while paused), if known
ReadyCount = Callable[[str, str], "int | None"]
Paused = Callable[[str, str], bool]  # (namespace, queue) -> whether it is paused now
Propose = Callable[[str, bytes, list[str]], "asyncio.Future[Any]"]  # Committer.propose
# (namespace, queue, message id, lock id) -> that lease's deadline now, if it is live
LeaseEnd = Callable[[str, str, str, str], "int | None"]


class _Session:
    def __init__(
        self,
        session_id: str,
        credit: int,
        dequeue: pb.DequeueRequest,
        lease_end: LeaseEnd | None = None,
        concurrency: int | None = None,
        worker_id: str = "",
        stream: str = "Lease",
    ) -> None:
        self.id = session_id
        self.worker_id = worker_id  # as the worker names itself
        self.stream = stream  # "Lease" or "Work"
        self.opened_at = wall_clock_ms()
        self._lease_end = lease_end
        self.credit = credit
        self.concurrency = concurrency or credit  # jobs the worker runs at once
        self.dequeue = dequeue
        self.where: tuple[str, str] | None = None  # (namespace, queue) of a single-queue session
        if len(dequeue.queues) == 1:
            self.where = (dequeue.namespace, dequeue.queues[0].queue)
        # Every (namespace, queue) it leases from.
        self.serves = frozenset((dequeue.namespace, weighted.queue) for weighted in dequeue.queues)
        # (message id, lock id) -> (lock deadline, namespace, queue)
        self.held: dict[tuple[str, str], tuple[int, str, str]] = {}
        self.settled = asyncio.Event()
        self.wake = asyncio.Event()  # set when a Dequeue is proposed for it
        # Dequeues proposed for it, in log order, and how many jobs each asks for.
        self.handoffs: deque[tuple[asyncio.Future[Any], int]] = deque()
        self.asked = 0  # jobs its Dequeues in flight may still bring
        self.ending = False  # EndLease: lease nothing more, send what is leased
        self.leased = 0  # jobs leased to it since it connected
        self.waiting = ""  # why it waits for a queue to exist, as the node said it
        self._sweep_at = _NEVER  # no held lease ends before this (a lower bound)

    def describe(self) -> dict[str, Any]:
        """The session as ``GET /v1/workers`` shows it."""
        return {
            "worker_id": self.worker_id,
            "session_id": self.id,
            "stream": self.stream,
            "queues": [
                {"queue": weighted.queue, "weight": weighted.weight or 1}
                for weighted in self.dequeue.queues
            ],
            "credit": self.credit,
            "concurrency": self.concurrency,
            "held": len(self.held),
            "leased": self.leased,
            "connected_at_ms": self.opened_at,
            "ending": self.ending,
            "waiting_for_queue": bool(self.waiting),
        }

    def end(self) -> None:
        """Lease nothing more (EndLease, ``end``): wake the loop to see it."""
        self.ending = True
        self.wake.set()
        self.settled.set()

    def hold(self, jobs: list[Any]) -> None:
        self.leased += len(jobs)
        for job in jobs:
            self.held[(job.id, job.lock_id)] = (job.lock_deadline, job.namespace, job.queue)
            self._sweep_at = min(self._sweep_at, job.lock_deadline)

    def free(self, now: int) -> int:
        """Credit neither held by leased jobs nor asked for by Dequeues in flight."""
        if self.held and self._sweep_at <= now:
            self._sweep(now)
        return self.credit - len(self.held) - self.asked

    def idle_handlers(self) -> int:
        """Handlers with no job (a job held and not settled counts as running),
        so the jobs it could take without any waiting behind a busy one."""
        return self.concurrency - len(self.held) - self.asked

    def _sweep(self, now: int) -> None:
        """Forget the leases that ran out: their jobs are back in the queue. A
        lease the worker's heartbeats refreshed past its first deadline is still
        the worker's: ``lease_end`` tells its deadline now."""
        kept: dict[tuple[str, str], tuple[int, str, str]] = {}
        for lock, (first_end, namespace, queue) in self.held.items():
            end = first_end
            if end <= now and self._lease_end is not None:
                end = self._lease_end(namespace, queue, *lock) or end
            if end > now:
                kept[lock] = (end, namespace, queue)
        self.held = kept
        self._sweep_at = min((end for end, _, _ in kept.values()), default=_NEVER)


async def _first(*events: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def arrival_shares(sessions: list[_Session], count: int, now: int) -> list[int]:
    """How many of ``count`` new jobs each session (in the order given) leases.

    First, as many as its idle handlers take, filling one session before the
    next: the jobs of a flush then reach a few workers in large pushes (and
    come back in large settles) instead of a sliver to each, and none waits
    behind a busy handler. What is left then goes a fair share each to the
    sessions with credit free, to wait in the worker for a handler.
    """
    frees = [session.free(now) for session in sessions]
    shares = []
    left = count
    for session, free in zip(sessions, frees, strict=True):
        take = max(0, min(free, session.idle_handlers(), left))
        shares.append(take)
        left -= take
    rooms = [free - share for free, share in zip(frees, shares, strict=True)]
    while left > 0:  # each round fills a session's credit, or leases all that is left
        with_room = [index for index, room in enumerate(rooms) if room > 0]
        if not with_room:
            break
        for turn, index in enumerate(with_room):
            share = min(rooms[index], -(-left // (len(with_room) - turn)))
            shares[index] += share
            rooms[index] -= share
            left -= share
    return shares


class WorkerSessions:
    """The open lease streams of a node.

    When an applied write wakes them, every session with credit could propose
    a Dequeue, and all but the first would go through the log for nothing.
    So a session first looks at the leader's count of ready jobs on its
    queues, less what other sessions' Dequeues in flight will take
    (``_claimed``), and proposes only when something is left for it.

    With ``propose`` (the committer's), the node also calls ``saw_write``
    with every write and ``lease_arrivals`` as each group-commit flush
    begins: the jobs enqueued since are leased to the sessions waiting on
    their queue (alone, or among others by weight) by Dequeues that follow
    the enqueues in the log."""

    def __init__(
        self,
        gateway: Gateway,
        wakeup: Wakeup,
        ready_count: ReadyCount | None = None,
        propose: Propose | None = None,
        lease_end: LeaseEnd | None = None,
        paused: Paused | None = None,
    ) -> None:
        self._gateway = gateway
        self._wakeup = wakeup
        self._ready_count = ready_count
        self._paused = paused
        self._propose = propose
        self._lease_end = lease_end
        self._claimed: dict[tuple[str, str], int] = {}
        self._arrivals: dict[tuple[str, str], int] = {}  # ready jobs proposed, by queue
        self._turn = 0  # rotates which waiting session is handed arrivals first
        self._sessions: dict[str, _Session] = {}
        self._stopping = asyncio.Event()
        self._releasing: set[asyncio.Future[Any]] = set()  # unsent jobs going back
        self.given_back = 0  # unsent jobs released, for the metrics

    @property
    def count(self) -> int:
        return len(self._sessions)

    def stop(self) -> None:
        """End every stream (cleanly, status OK)."""
        self._stopping.set()

    async def lease(
        self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncGenerator[pb.LeaseEvent, None]:
        try:
            request = _parse(pb.LeaseRequest, raw)
            key = self._gateway.auth.key_of(context.invocation_metadata() or ())
            session = self._open(request, key, "Lease")
        except KokaqError as error:
            await abort_with(context, error)
            return
        try:
            yield pb.LeaseEvent(session_id=session.id)
            async with contextlib.aclosing(self._leased_batches(session)) as batches:
                async for jobs in batches:
                    if not jobs:
                        yield pb.LeaseEvent(waiting=session.waiting)
                        continue
                    yield pb.LeaseEvent(jobs=[cv.message_to_proto(job) for job in jobs])
        except KokaqError as error:  # not the leader any more, say
            await abort_with(context, error)
        finally:
            self._close(session)

    def _open(self, request: pb.LeaseRequest, key: str | None, stream: str) -> _Session:
        """A new session for a valid, authorized lease request."""
        dequeue = _dequeue_request(request)
        self._gateway.authorize("Dequeue", dequeue, key)
        concurrency = request.concurrency if request.HasField("concurrency") else None
        session = _Session(
            new_ids(1)[0],
            int(request.credit),
            dequeue,
            self._lease_end,
            concurrency,
            worker_id=request.worker_id,
            stream=stream,
        )
        self._sessions[session.id] = session
        log.info(
            "worker %r opened a %s stream on %s (credit %d)",
            session.worker_id,
            stream,
            [q.queue for q in dequeue.queues],
            session.credit,
        )
        return session

    def _close(self, session: _Session) -> None:
        """The stream is over (closed by ``_leased_batches`` already, unless it
        broke before that began)."""
        self._sessions.pop(session.id, None)
        log.info("worker %r: %s stream closed", session.worker_id, session.stream)

    def connected(self, namespace: str) -> list[dict[str, Any]]:
        """The worker streams open on this node for ``namespace``, oldest first."""
        found = [s for s in self._sessions.values() if s.dequeue.namespace == namespace]
        described = []
        for session in sorted(found, key=lambda s: s.opened_at):
            shown = session.describe()
            paused = self._paused
            shown["paused_queues"] = [
                w.queue for w in session.dequeue.queues if paused and paused(namespace, w.queue)
            ]
            described.append(shown)
        return described

    async def _leased_batches(self, session: _Session) -> AsyncGenerator[list[Any], None]:
        """The jobs leased for a session, a Dequeue's at a time, until it ends
        (or the node stops); then the session is closed. Jobs leased and not
        yet taken from here when it closes go back to their queue."""
        dequeue = session.dequeue
        # A Dequeue in flight whose jobs are not sent yet. The awaits below are
        # shielded: if the stream breaks, it still finishes, and its jobs go back.
        unsent: asyncio.Future[Any] | None = None
        try:
            # A Dequeue proposed for the session is answered even when stopping.
            while session.handoffs or not (self._stopping.is_set() or session.ending):
                if session.handoffs:
                    unsent, asked = session.handoffs.popleft()
                    try:
                        jobs = await asyncio.shield(unsent)
                    finally:
                        session.asked -= asked
                    if isinstance(jobs, KokaqError):
                        unsent = None  # it failed: nothing to give back
                        if not isinstance(jobs, NotFound):
                            raise jobs
                        # Proposed behind an enqueue that failed, its queue missing.
                        if self._wait_for_queue(session, jobs):
                            yield []  # the stream says why it waits
                        continue
                    self._gateway.leased(jobs)
                    if not jobs:
                        continue  # taken by an earlier Dequeue, say
                else:
                    work = self._wakeup.current()
                    free = session.free(wall_clock_ms())
                    if free <= 0:
                        session.settled.clear()
                        await _first(session.settled, self._stopping, timeout=_RECHECK_SECONDS)
                        continue
                    if session.waiting:
                        if not self._queues_exist(session):
                            await self._park(session, work)  # no Dequeue (a log entry) till then
                            continue
                        session.waiting = ""
                    claim = self._claim(session, free)
                    if claim == 0:
                        await self._park(session, work)
                        continue
                    dequeue.max_count = claim
                    session.asked += claim
                    unsent = asyncio.ensure_future(self._gateway.run_authorized("Dequeue", dequeue))
                    waits = False
                    try:
                        jobs = await asyncio.shield(unsent)
                    except NotFound as error:
                        unsent, jobs = None, []
                        waits = self._wait_for_queue(session, error)
                    except KokaqError:
                        unsent = None
                        raise
                    finally:
                        session.asked -= claim
                        self._unclaim(session.where, claim)
                    if waits:
                        yield []  # the stream says why it waits
                    if not jobs:
                        await self._park(session, work)
                        continue
                unsent = None
                session.hold(jobs)
                yield jobs
        finally:
            self._sessions.pop(session.id, None)
            for future in [unsent] + [handoff for handoff, _ in session.handoffs]:
                if future is not None:
                    future.add_done_callback(self._give_back_unsent)

    @staticmethod
    def _wait_for_queue(session: _Session, error: NotFound) -> bool:
        """A worker may start before the first job creates its queue (or
        namespace): its session waits for it rather than fail. True when it
        starts to wait (the batches then yield ``[]``: the stream says why)."""
        if session.waiting:
            return False
        log.info("worker %r waits: %s", session.worker_id, error.message)
        session.waiting = error.message
        return True

    def _queues_exist(self, session: _Session) -> bool:
        """Whether every queue the session names exists here now (when the
        node can tell without a Dequeue)."""
        if self._ready_count is None:
            return True
        return all(self._ready_count(*queue) is not None for queue in session.serves)

    async def _park(self, session: _Session, work: asyncio.Event) -> None:
        """Wait for work: an applied write that may have made some ready, or
        a Dequeue proposed for the session along with an enqueue."""
        session.wake.clear()
        if not session.handoffs and not session.ending:
            await _first(work, session.wake, self._stopping, timeout=_RECHECK_SECONDS)

    async def end_lease(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """EndLease: the session leases nothing more; its stream sends what is
        leased for it already, then ends. Whoever may lease from its queues may
        end it."""
        try:
            request = _parse(pb.EndLeaseRequest, raw)
            if not request.session_id:
                raise InvalidArgument("session_id", "is required")
            session = self._sessions.get(request.session_id)
            if session is None:
                raise NotFound(
                    f"lease session {request.session_id!r} not found (its stream has ended)"
                )
            key = self._gateway.auth.key_of(context.invocation_metadata() or ())
            self._gateway.authorize("Dequeue", session.dequeue, key)
        except KokaqError as error:
            await abort_with(context, error)
            return None
        session.end()
        return pb.EndLeaseResponse()

    async def work(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        """Work: Lease and SettleMany on one stream. The first message opens
        the session; later ones settle jobs (each answered by one event, in
        the background, so the jobs keep coming meanwhile) or end it. The
        stream ends once the session has ended (``end``, the worker closing
        its side, or the node stopping), its last jobs are sent, and the
        settles received are answered; a bad message ends it with
        INVALID_ARGUMENT naming the field."""
        try:
            first = await anext(aiter(requests), None)
            if first is None:
                return  # closed before opening: nothing to do
            opening = _parse(pb.WorkRequest, first)
            if not opening.HasField("lease"):
                raise InvalidArgument("lease", "the first message opens the session: give lease")
            if opening.settles or opening.end:
                raise InvalidArgument("lease", "the first message carries the lease alone")
            key = self._gateway.auth.key_of(context.invocation_metadata() or ())
            session = self._open(opening.lease, key, "Work")
        except KokaqError as error:
            await abort_with(context, error)
            return
        stream = _WorkStream(
            session,
            self._leased_batches(session),
            functools.partial(self._settle_items, session.id, key=key),
            self._stopping,
            context,
        )
        try:
            await stream.run(requests)
        except KokaqError as error:  # a bad message, or not the leader any more
            await abort_with(context, error)
        finally:
            self._close(session)

    def _give_back_unsent(self, future: asyncio.Future[Any]) -> None:
        """Release the jobs a Dequeue leased for a stream that broke before they
        were sent: no worker has them, so they need not wait out their lease."""
        if future.cancelled() or future.exception() is not None:
            return
        jobs = future.result()
        if isinstance(jobs, KokaqError):
            return
        for job in jobs:
            release = asyncio.ensure_future(
                self._gateway.run_authorized("Release", pb.ReleaseRequest(lock=cv.lock_ref(job)))
            )
            self._releasing.add(release)
            release.add_done_callback(self._released)

    def _released(self, release: asyncio.Future[Any]) -> None:
        self._releasing.discard(release)
        if release.cancelled():
            return
        if (error := release.exception()) is not None:
            # Not the leader any more, say: the lease runs out instead.
            log.info("could not give back an unsent job: %s", error)
        else:
            self.given_back += 1

    def saw_write(self, name: str, request: Any) -> None:
        """Count the jobs a write about to be proposed makes ready at once."""
        if not self._sessions:
            return
        if name == "Enqueue":
            ready = 0 if _later(request.message) else 1
        elif name == "EnqueueBatch":
            ready = sum(1 for spec in request.messages if not _later(spec))
        else:
            return
        if ready:
            where = (request.namespace, request.queue)
            self._arrivals[where] = self._arrivals.get(where, 0) + ready

    def lease_arrivals(self) -> None:
        """Propose, behind the enqueues pending, a Dequeue for the sessions on
        their queue with credit free (``arrival_shares``), taking turns at
        being first."""
        arrivals, self._arrivals = self._arrivals, {}
        if self._propose is None:
            return
        now = wall_clock_ms()
        for where, count in arrivals.items():
            sessions = self._waiting_on(where)
            if not sessions or (self._paused is not None and self._paused(*where)):
                continue
            first = self._turn % len(sessions)
            self._turn += 1
            sessions = sessions[first:] + sessions[:first]
            for session, share in zip(sessions, arrival_shares(sessions, count, now), strict=True):
                if share <= 0:
                    continue
                request = pb.DequeueRequest()
                request.CopyFrom(session.dequeue)
                request.max_count = share
                ids = new_ids(ids_needed("Dequeue", request))
                future = self._propose("Dequeue", request.SerializeToString(), ids)
                session.handoffs.append((future, share))
                session.asked += share
                session.wake.set()

    def _waiting_on(self, where: tuple[str, str]) -> list[_Session]:
        """The sessions leasing from queue ``where`` that still take jobs (not ending)."""
        return [s for s in self._sessions.values() if where in s.serves and not s.ending]

    def _claim(self, session: _Session, free: int) -> int:
        """How many jobs to ask for: no more than ``free``, nor than the
        session's queues hold ready and other sessions have not claimed (when
        the ready counts are known)."""
        where = session.where
        if self._ready_count is None:
            return free
        if where is None:
            # Several queues, chosen among by weight in the Dequeue: the jobs
            # left on them all bound the ask (claimed by queue, it is not).
            left = 0
            for queue in session.serves:
                ready = self._ready_count(*queue)
                if ready is None:
                    return free
                left += max(0, ready - self._claimed.get(queue, 0))
            return min(free, left)
        ready = self._ready_count(*where)
        if ready is None:
            return free  # unknown (a missing queue, say): the Dequeue will tell
        left = ready - self._claimed.get(where, 0)
        # A fair share each, so that one worker does not take every job while
        # the others idle: the sessions on this queue wake together.
        sharing = len(self._waiting_on(where))
        claim = max(0, min(free, -(-left // max(1, sharing))))
        if claim:
            self._claimed[where] = self._claimed.get(where, 0) + claim
        return claim

    def _unclaim(self, where: tuple[str, str] | None, claim: int) -> None:
        if self._ready_count is None or where is None:
            return
        left = self._claimed.get(where, 0) - claim
        if left > 0:
            self._claimed[where] = left
        else:
            self._claimed.pop(where, None)

    async def settle(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """Ack, nack or release one job, and give its credit back to the session.
        A settle that fails (a lost lock, say) frees the credit all the same:
        the job is no longer the worker's."""
        try:
            request = _parse(pb.SettleRequest, raw)
        except KokaqError as error:
            await abort_with(context, error)
            return None
        try:
            key = self._gateway.auth.key_of(context.invocation_metadata() or ())
            return pb.SettleResponse(outcome=await self._settle(request, key))
        except KokaqError as error:
            await abort_with(context, error)
            return None
        finally:
            self._give_back(request.session_id, [request])

    async def settle_many(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """Settle many jobs in one call: the acks of one queue go to the log as
        one AckBatch. Each item succeeds or fails alone."""
        try:
            request = _parse(pb.SettleManyRequest, raw)
            if not 1 <= len(request.items) <= MAX_BATCH:
                raise InvalidArgument("items", f"must hold 1 to {MAX_BATCH} items")
            key = self._gateway.auth.key_of(context.invocation_metadata() or ())
            results = await self._settle_items(request.session_id, list(request.items), key)
        except KokaqError as error:
            await abort_with(context, error)
            return None
        return pb.SettleManyResponse(results=results)

    async def _settle_items(
        self, session_id: str, items: list[pb.SettleRequest], key: str | None
    ) -> list[pb.SettleOutcome]:
        """Each item's outcome; the acks of one queue go to the log as one
        AckBatch. Raises Unavailable (not the leader, or stopping) when some
        could not apply, so that the worker sends them all again where they
        can: what did apply answers as before (a settle repeated for the same
        lease), and is not repeated."""
        results = [pb.SettleOutcome() for _ in items]
        by_queue: dict[tuple[str, str], list[int]] = {}
        others = []
        for index, item in enumerate(items):
            if item.WhichOneof("outcome") == "ack":
                by_queue.setdefault((item.ack.namespace, item.ack.queue), []).append(index)
            else:
                others.append(index)

        unavailable: list[KokaqError] = []

        async def ack_group(namespace: str, queue: str, indexes: list[int]) -> None:
            batch = pb.AckBatchRequest(namespace=namespace, queue=queue)
            for index in indexes:
                item = items[index]
                added = batch.items.add(message_id=item.ack.message_id, lock_id=item.ack.lock_id)
                if item.result:
                    added.result = item.result
            try:
                errors = await self._gateway.run("AckBatch", batch, key)
            except Unavailable as failure:
                unavailable.append(failure)
                return
            except KokaqError as failure:
                errors = [failure] * len(indexes)
            for index, found in zip(indexes, errors, strict=True):
                _record(results[index], "acked", found and cv.ack_item_error(found))

        async def one(index: int) -> None:
            try:
                _record(results[index], await self._settle(items[index], key), None)
            except Unavailable as failure:
                unavailable.append(failure)
            except KokaqError as error:
                _record(results[index], "", error)

        try:
            await asyncio.gather(
                *(ack_group(ns, q, indexes) for (ns, q), indexes in by_queue.items()),
                *(one(index) for index in others),
            )
        finally:
            self._give_back(session_id, items)
        if unavailable:
            raise unavailable[0]
        return results

    async def _settle(self, request: pb.SettleRequest, key: str | None) -> str:
        outcome = request.WhichOneof("outcome")
        if request.result and outcome != "ack":
            raise InvalidArgument("result", "goes with an ack only")
        if outcome == "ack":
            await self._gateway.ack(request.ack, request.result, key)
            return "acked"
        if outcome == "nack":
            return str((await self._gateway.run("Nack", request.nack, key)).outcome)
        if outcome == "release":
            await self._gateway.run("Release", request.release, key)
            return "released"
        raise InvalidArgument("outcome", "give ack, nack or release")

    def _give_back(self, session_id: str, settled: list[pb.SettleRequest]) -> None:
        session = self._sessions.get(session_id)
        if session is None:
            return
        for request in settled:
            outcome = request.WhichOneof("outcome")
            if outcome is not None:
                item = getattr(request, outcome)
                lock = item if outcome == "ack" else item.lock
                session.held.pop((lock.message_id, lock.lock_id), None)
        session.settled.set()

    def handler(self, observe: Observe | None = None) -> grpc.GenericRpcHandler[Any, Any]:
        """The Workers service; ``observe`` is told each call's method, status
        and duration (a stream's: how long it was open) when it ends."""

        def timed(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
            if observe is None:
                return method

            async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                _observe_when_done(name, context, observe)
                return await method(request, context)

            return handle

        async def lease(
            raw: bytes, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncGenerator[pb.LeaseEvent, None]:
            if observe is not None:
                _observe_when_done("Lease", context, observe)
            async with contextlib.aclosing(self.lease(raw, context)) as events:
                async for event in events:
                    yield event

        return grpc.method_handlers_generic_handler(
            "kokaq.v1.Workers",
            {
                "Lease": grpc.unary_stream_rpc_method_handler(
                    lease,
                    request_deserializer=None,
                    response_serializer=pb.LeaseEvent.SerializeToString,
                ),
                "Settle": grpc.unary_unary_rpc_method_handler(
                    timed("Settle", self.settle),
                    request_deserializer=None,
                    response_serializer=pb.SettleResponse.SerializeToString,
                ),
                "SettleMany": grpc.unary_unary_rpc_method_handler(
                    timed("SettleMany", self.settle_many),
                    request_deserializer=None,
                    response_serializer=pb.SettleManyResponse.SerializeToString,
                ),
                "Work": grpc.stream_stream_rpc_method_handler(
                    timed("Work", self.work),
                    request_deserializer=None,
                    response_serializer=pb.WorkEvent.SerializeToString,
                ),
                "EndLease": grpc.unary_unary_rpc_method_handler(
                    timed("EndLease", self.end_lease),
                    request_deserializer=None,
                    response_serializer=pb.EndLeaseResponse.SerializeToString,
                ),
            },
        )


class _WorkStream:
    """One Work stream once its session is open: a task sends the session's
    jobs, another reads settles and answers each in a task of its own; every
    event goes out through one writer at a time."""

    def __init__(
        self,
        session: _Session,
        batches: AsyncGenerator[list[Any], None],
        settle: Callable[[list[pb.SettleRequest]], Awaitable[list[pb.SettleOutcome]]],
        stopping: asyncio.Event,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        self._session = session
        self._batches = batches  # the session's leased jobs
        self._settle_items = settle
        self._stopping = stopping
        self._context = context
        self._writing = asyncio.Lock()
        self._settling: set[asyncio.Task[None]] = set()
        self._failed: asyncio.Future[KokaqError] = asyncio.get_running_loop().create_future()

    async def run(self, requests: AsyncIterator[bytes]) -> None:
        await self._send(pb.WorkEvent(session_id=self._session.id))
        jobs = asyncio.ensure_future(self._send_jobs())
        reader = asyncio.ensure_future(self._read(requests))
        stopping = asyncio.ensure_future(self._stopping.wait())
        waits: list[asyncio.Future[Any]] = [jobs, reader, stopping, self._failed]
        try:
            # Until the jobs are all sent and no more settles can come: the
            # worker closed its side, or the node is stopping.
            while True:
                if self._failed.done():
                    raise self._failed.result()
                if jobs.done():
                    jobs.result()  # its KokaqError: not the leader any more, say
                    if reader.done() or stopping.done():
                        break
                pending = [waiting for waiting in waits if not waiting.done()]
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            while self._settling:  # answer what was received
                await asyncio.wait(set(self._settling))
                if self._failed.done():
                    raise self._failed.result()
        finally:
            for task in (jobs, reader, stopping):
                task.cancel()
            # Settles in flight are left to finish: their writes are in the log.

    async def _send(self, event: pb.WorkEvent) -> None:
        async with self._writing:
            await self._context.write(event)

    async def _send_jobs(self) -> None:
        async with contextlib.aclosing(self._batches) as batches:
            async for jobs in batches:
                if not jobs:
                    await self._send(pb.WorkEvent(waiting=self._session.waiting))
                    continue
                await self._send(pb.WorkEvent(jobs=[cv.message_to_proto(job) for job in jobs]))
        await self._send(pb.WorkEvent(ended=True))

    async def _read(self, requests: AsyncIterator[bytes]) -> None:
        try:
            async for raw in requests:
                request = _parse(pb.WorkRequest, raw)
                if request.HasField("lease"):
                    raise InvalidArgument("lease", "the session is open: lease only in the first")
                if len(request.settles) > MAX_BATCH:
                    raise InvalidArgument("settles", f"must hold 0 to {MAX_BATCH} settles")
                if request.settles:
                    task = asyncio.ensure_future(self._settle(request))
                    self._settling.add(task)
                    task.add_done_callback(self._settling.discard)
                if request.end:
                    self._session.end()
        except KokaqError as error:
            self._fail(error)
        self._session.end()  # the worker closed its side: it takes no more jobs

    async def _settle(self, request: pb.WorkRequest) -> None:
        try:
            results = await self._settle_items(list(request.settles))
        except KokaqError as error:  # Unavailable: the worker sends them again elsewhere
            self._fail(error)
            return
        event = pb.WorkEvent(settle_id=request.settle_id, settled=results)
        try:
            await self._send(event)
        except Exception as error:  # whatever grpc raises for a stream that is gone
            # The stream ended meanwhile: the worker, not knowing the answer,
            # sends these settles again, and they answer as they did.
            log.debug("could not answer settles on an ended stream: %r", error)

    def _fail(self, error: KokaqError) -> None:
        if not self._failed.done():
            self._failed.set_result(error)


def _observe_when_done(
    name: str, context: grpc.aio.ServicerContext[Any, Any], observe: Observe
) -> None:
    started = time.perf_counter()

    def done(ended: Any) -> None:
        code = ended.code()
        observe(name, code.name if code is not None else "OK", time.perf_counter() - started)

    # grpc-stubs names a class here; gRPC takes any callable of the context.
    context.add_done_callback(done)  # type: ignore[arg-type]


def _record(result: pb.SettleOutcome, outcome: str, error: KokaqError | None) -> None:
    if error is None:
        result.outcome = outcome
    else:
        result.error.CopyFrom(error_detail(error))


def _later(spec: pb.MessageSpec) -> bool:
    """Whether a job is enqueued delayed (not ready at once)."""
    return (spec.HasField("delay_ms") and spec.delay_ms > 0) or spec.HasField("run_at")


def _parse(cls: Any, raw: bytes) -> Any:
    try:
        return cls.FromString(raw)
    except DecodeError:
        raise InvalidArgument("request", "is not a valid protobuf message") from None


def _dequeue_request(request: pb.LeaseRequest) -> pb.DequeueRequest:
    if not request.queues:
        raise InvalidArgument("queues", "name at least one queue")
    if not 1 <= request.credit <= MAX_BATCH:
        raise InvalidArgument("credit", f"must be 1 to {MAX_BATCH}")
    if len(request.worker_id) > 256:
        raise InvalidArgument("worker_id", "must be at most 256 characters")
    if request.HasField("concurrency") and not 1 <= request.concurrency <= request.credit:
        raise InvalidArgument("concurrency", f"must be 1 to the credit ({request.credit})")
    dequeue = pb.DequeueRequest(namespace=request.namespace, queues=request.queues)
    if request.HasField("visibility_timeout_ms"):
        dequeue.visibility_timeout_ms = request.visibility_timeout_ms
    return dequeue
