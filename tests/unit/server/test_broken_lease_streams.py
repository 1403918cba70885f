"""A worker stream (Lease or Work) that breaks while a Dequeue for it is in
flight: the Dequeue still leases its jobs (the log applies it), and the node
gives them back at once, since it never sent them. The stream and the log are
driven by hand here, to break the stream exactly while the Dequeue waits for
the log. And how a Work stream ends: with its Dequeue's error, or, once ended,
when the worker closes its side."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from kokaq.core import Engine, MessageView, NotLeader
from kokaq.protocol.v1 import kokaq_pb2 as pb
from kokaq.server.workers import Wakeup, WorkerSessions

LEASE = pb.LeaseRequest(namespace="ns", queues=[pb.QueueWeight(queue="q")], credit=2)


class Gateway:
    """The part of the node's gateway a lease session uses; Dequeues wait
    until the test answers them, as if the log were slow."""

    def __init__(self) -> None:
        self.auth = SimpleNamespace(key_of=lambda metadata: None)
        self.dequeues: list[asyncio.Future[Any]] = []
        self.released: list[tuple[str, str]] = []

    def authorize(self, name: str, request: Any, key: str | None) -> None:
        pass

    def leased(self, jobs: list[Any]) -> None:
        pass

    async def run_authorized(self, name: str, request: Any, **_: Any) -> Any:
        if name == "Dequeue":
            self.dequeues.append(asyncio.get_running_loop().create_future())
            return await self.dequeues[-1]
        assert name == "Release"
        self.released.append((request.lock.message_id, request.lock.lock_id))
        return None


class Context:
    def invocation_metadata(self) -> tuple[()]:
        return ()


def leased(*message_ids: str) -> list[MessageView]:
    """Jobs as a Dequeue answers them: leased, with their lock ids."""
    engine = Engine()
    engine.create_namespace("ns", now=0)
    engine.create_queue("ns", "q", now=0)
    for message_id in message_ids:
        engine.enqueue("ns", "q", b"{}", message_id=message_id, now=1)
    return engine.dequeue("ns", "q", lock_id="lock", now=1, max_count=len(message_ids))


def locks(jobs: list[MessageView]) -> list[tuple[str, str]]:
    return [(job.id, job.lock_id or "") for job in jobs]


async def until(condition: Callable[[], object]) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def open_stream(
    gateway: Gateway, **options: Any
) -> tuple[WorkerSessions, AsyncIterator[pb.LeaseEvent], asyncio.Future[pb.LeaseEvent]]:
    """A session's stream past its first event, and its next event, pending."""
    sessions = WorkerSessions(gateway, Wakeup(), **options)  # type: ignore[arg-type]
    stream = sessions.lease(LEASE.SerializeToString(), Context())  # type: ignore[arg-type]
    assert (await anext(stream)).session_id
    return sessions, stream, asyncio.ensure_future(anext(stream))


class WorkContext(Context):
    """A Work stream's context: the events the node writes, in a queue, and
    the status it ends with, if it fails."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[pb.WorkEvent] = asyncio.Queue()
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    async def write(self, event: pb.WorkEvent) -> None:
        self.events.put_nowait(event)

    async def abort(self, code: grpc.StatusCode, details: str, **_: Any) -> None:
        self.aborted = (code, details)
        raise RuntimeError("aborted")  # as gRPC's abort does: the handler ends here


async def worker_side(requests: asyncio.Queue[bytes | None]) -> AsyncIterator[bytes]:
    while (raw := await requests.get()) is not None:
        yield raw


async def open_work(
    gateway: Gateway,
) -> tuple[WorkerSessions, WorkContext, asyncio.Queue[bytes | None], asyncio.Future[Any]]:
    """A Work stream past its first event: the node's side, what the worker
    sends (None closes its side), and the handler, running."""
    sessions = WorkerSessions(gateway, Wakeup())  # type: ignore[arg-type]
    context, requests = WorkContext(), asyncio.Queue[bytes | None]()
    requests.put_nowait(pb.WorkRequest(lease=LEASE).SerializeToString())
    handler = asyncio.ensure_future(sessions.work(worker_side(requests), context))  # type: ignore[arg-type]
    assert (await context.events.get()).session_id
    return sessions, context, requests, handler


async def break_stream(pulling: asyncio.Future[Any]) -> None:
    pulling.cancel()  # what gRPC does to the handler when the client goes away
    with pytest.raises(asyncio.CancelledError):
        await pulling


@pytest.mark.parametrize("stream", ["Lease", "Work"])
def test_jobs_of_a_dequeue_in_flight_go_back_when_the_stream_breaks(stream: str) -> None:
    async def scenario() -> None:
        gateway = Gateway()
        if stream == "Lease":
            sessions, _, pulling = await open_stream(gateway)
        else:
            sessions, _, _, pulling = await open_work(gateway)
        await until(lambda: gateway.dequeues)  # the session asked for jobs
        await break_stream(pulling)
        assert sessions.count == 0 and gateway.released == []
        jobs = leased("a", "b")
        gateway.dequeues[0].set_result(jobs)
        await until(lambda: len(gateway.released) == 2)
        assert gateway.released == locks(jobs)
        await until(lambda: sessions.given_back == 2)  # counted once released

    asyncio.run(scenario())


def test_jobs_handed_to_a_stream_that_broke_go_back() -> None:
    """The handoff path: the session waits, a job is enqueued, and the node
    proposes the session's Dequeue behind it; the stream breaks before the
    entry applies."""

    async def scenario() -> None:
        gateway = Gateway()
        handoffs: list[asyncio.Future[Any]] = []

        def propose(name: str, request: bytes, ids: list[str]) -> asyncio.Future[Any]:
            assert name == "Dequeue"
            handoffs.append(asyncio.get_running_loop().create_future())
            return handoffs[-1]

        # Nothing is ready: the session waits.
        sessions, _, pulling = await open_stream(
            gateway, ready_count=lambda namespace, queue: 0, propose=propose
        )
        await asyncio.sleep(0)  # parked
        enqueue = pb.EnqueueRequest(namespace="ns", queue="q", message=pb.MessageSpec())
        sessions.saw_write("Enqueue", enqueue)
        sessions.lease_arrivals()
        assert len(handoffs) == 1
        await asyncio.sleep(0)  # the session awaits its handoff
        await break_stream(pulling)
        jobs = leased("c")
        handoffs[0].set_result(jobs)
        await until(lambda: gateway.released)
        assert gateway.released == locks(jobs)
        await until(lambda: sessions.given_back == 1)
        assert gateway.dequeues == []  # no other Dequeue was made for it

    asyncio.run(scenario())


def test_jobs_sent_on_the_stream_stay_leased() -> None:
    """Jobs the stream sent may be with the worker: they wait for their lease."""

    async def scenario() -> None:
        gateway = Gateway()
        sessions, stream, pulling = await open_stream(gateway)
        await until(lambda: gateway.dequeues)
        gateway.dequeues[0].set_result(leased("d"))
        event = await pulling
        assert [job.id for job in event.jobs] == ["d"]
        pulling = asyncio.ensure_future(anext(stream))
        await until(lambda: len(gateway.dequeues) == 2)  # it asks for the credit left
        await break_stream(pulling)
        gateway.dequeues[1].set_result([])
        for _ in range(5):
            await asyncio.sleep(0)
        assert gateway.released == [] and sessions.given_back == 0

    asyncio.run(scenario())


def test_a_lease_stream_closed_after_its_first_event_leaves_no_session() -> None:
    async def scenario() -> None:
        sessions = WorkerSessions(Gateway(), Wakeup())  # type: ignore[arg-type]
        stream = sessions.lease(LEASE.SerializeToString(), Context())  # type: ignore[arg-type]
        assert (await anext(stream)).session_id
        assert sessions.count == 1
        await stream.aclose()  # gone before the session's first Dequeue
        assert sessions.count == 0

    asyncio.run(scenario())


def test_a_work_stream_whose_dequeue_fails_ends_with_that_error() -> None:
    """On a follower, say: the session's Dequeue answers NotLeader, and the
    stream ends with it (the worker goes to the leader), though the worker
    keeps its side open."""

    async def scenario() -> None:
        gateway = Gateway()
        sessions, context, _, handler = await open_work(gateway)
        await until(lambda: gateway.dequeues)
        gateway.dequeues[0].set_exception(NotLeader("10.0.0.2:9000"))
        with pytest.raises(RuntimeError, match="aborted"):
            await asyncio.wait_for(handler, timeout=5)
        not_leader = "not the leader (leader: 10.0.0.2:9000)"
        assert context.aborted == (grpc.StatusCode.UNAVAILABLE, not_leader)
        assert sessions.count == 0

    asyncio.run(scenario())


def test_an_ended_work_stream_waits_for_the_worker_without_spinning() -> None:
    """After ``ended``, the node waits for the worker to close its side (its
    settles may still come): asleep, not polling."""

    async def scenario() -> None:
        gateway = Gateway()
        _, context, requests, handler = await open_work(gateway)
        await until(lambda: gateway.dequeues)
        requests.put_nowait(pb.WorkRequest(end=True).SerializeToString())
        gateway.dequeues[0].set_result([])  # nothing was ready
        assert (await asyncio.wait_for(context.events.get(), timeout=5)).ended
        started = time.process_time()
        await asyncio.sleep(0.3)
        assert time.process_time() - started < 0.1  # a busy loop would take the 0.3 s
        assert not handler.done()
        requests.put_nowait(None)  # the worker closes its side: the stream ends
        await asyncio.wait_for(handler, timeout=5)
        assert context.aborted is None

    asyncio.run(scenario())
