"""Which waiting worker sessions lease the jobs a flush enqueues: whole to
one worker while its handlers are idle, then the next; only what no idle
handler takes is split over the workers' free credit."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kokaq.protocol.v1 import kokaq_pb2 as pb
from kokaq.server.workers import Wakeup, WorkerSessions, _Session, arrival_shares
from tests.unit.server.test_broken_lease_streams import LEASE, Context, Gateway

NOW = 1_000
DEQUEUE = pb.DequeueRequest(namespace="ns", queues=[pb.QueueWeight(queue="q")])


def session(credit: int, concurrency: int | None = None, holding: int = 0) -> _Session:
    worker = _Session(f"s{id(object())}", credit, DEQUEUE, concurrency=concurrency)
    worker.hold(
        [
            SimpleNamespace(
                id=f"m{i}", lock_id="L", lock_deadline=NOW + 60_000, namespace="ns", queue="q"
            )
            for i in range(holding)
        ]
    )
    return worker


def test_a_flush_goes_whole_to_the_first_worker_with_idle_handlers() -> None:
    workers = [session(128, 64) for _ in range(4)]
    assert arrival_shares(workers, 33, NOW) == [33, 0, 0, 0]
    assert arrival_shares(workers, 100, NOW) == [64, 36, 0, 0]


def test_busy_workers_are_passed_over_while_another_has_idle_handlers() -> None:
    busy, half_busy, idle = (
        session(128, 64, holding=64),
        session(128, 64, holding=60),
        session(128, 64),
    )
    assert arrival_shares([busy, half_busy, idle], 10, NOW) == [0, 4, 6]


def test_what_no_idle_handler_takes_is_split_over_the_free_credit() -> None:
    workers = [session(4, 2) for _ in range(4)]
    # 2 each to the idle handlers, then the 4 left a fair share each.
    assert arrival_shares(workers, 12, NOW) == [3, 3, 3, 3]
    # Never past the credit: 16 is all four can hold.
    assert arrival_shares(workers, 40, NOW) == [4, 4, 4, 4]
    # Every handler busy: a fair share of the credit left.
    full = [session(4, 2, holding=2) for _ in range(2)]
    assert arrival_shares(full, 3, NOW) == [2, 1]


def test_without_a_concurrency_the_whole_credit_counts_as_handlers() -> None:
    """Workers of older SDKs do not send one."""
    workers = [session(8), session(8)]
    assert arrival_shares(workers, 10, NOW) == [8, 2]


@given(
    st.lists(
        st.tuples(st.integers(1, 50), st.integers(1, 50), st.integers(0, 50)),
        min_size=1,
        max_size=6,
    ),
    st.integers(0, 400),
)
def test_shares_lease_what_the_credit_allows_and_no_more(
    shapes: list[tuple[int, int, int]], count: int
) -> None:
    workers = []
    for credit, concurrency, holding in shapes:
        workers.append(session(credit, min(concurrency, credit), holding=min(holding, credit)))
    free = [w.free(NOW) for w in workers]
    shares = arrival_shares(workers, count, NOW)
    assert all(0 <= share <= room for share, room in zip(shares, free, strict=True))
    assert sum(shares) == min(count, sum(free))
    # Idle handlers are served first: a share beyond a session's idle handlers
    # means every session's idle handlers got work.
    idle = [min(room, w.idle_handlers()) for w, room in zip(workers, free, strict=True)]
    if any(share > max(0, i) for share, i in zip(shares, idle, strict=True)):
        assert all(share >= i for share, i in zip(shares, idle, strict=True))


def handing_sessions() -> tuple[WorkerSessions, list[pb.DequeueRequest]]:
    """Sessions on queues where nothing is ready, and the handoff Dequeues
    proposed for them (left unanswered, as if the log were slow)."""
    proposed: list[pb.DequeueRequest] = []

    def propose(name: str, request: bytes, ids: list[str]) -> asyncio.Future[Any]:
        assert name == "Dequeue"
        proposed.append(pb.DequeueRequest.FromString(request))
        return asyncio.get_running_loop().create_future()

    sessions = WorkerSessions(
        Gateway(),  # type: ignore[arg-type]
        Wakeup(),
        ready_count=lambda namespace, queue: 0,
        propose=propose,
    )
    return sessions, proposed


async def parked(
    sessions: WorkerSessions, request: pb.LeaseRequest, count: int = 1
) -> list[asyncio.Task[pb.LeaseEvent]]:
    """Open ``count`` lease streams past their first event; their next events,
    pending (the sessions look for work, then park)."""
    streams = [sessions.lease(request.SerializeToString(), Context()) for _ in range(count)]  # type: ignore[arg-type]
    for stream in streams:
        assert (await anext(stream)).session_id
    pulls = [asyncio.ensure_future(anext(stream)) for stream in streams]
    await asyncio.sleep(0)
    return pulls


async def close(pulls: list[asyncio.Task[pb.LeaseEvent]]) -> None:
    for pull in pulls:
        pull.cancel()
    await asyncio.gather(*pulls, return_exceptions=True)


def test_the_node_proposes_one_dequeue_for_a_flush_that_one_worker_can_run() -> None:
    """Through the sessions: four workers wait, 20 jobs are enqueued in one
    flush; one Dequeue leases all 20, and the next flush goes to another
    worker first."""

    async def scenario() -> None:
        sessions, proposed = handing_sessions()
        request = pb.LeaseRequest()
        request.CopyFrom(LEASE)
        request.credit, request.concurrency = 64, 32
        pulls = await parked(sessions, request, 4)  # nothing is ready
        batch = pb.EnqueueBatchRequest(
            namespace="ns", queue="q", messages=[pb.MessageSpec() for _ in range(20)]
        )
        sessions.saw_write("EnqueueBatch", batch)
        sessions.lease_arrivals()
        assert [d.max_count for d in proposed] == [20]
        sessions.saw_write("EnqueueBatch", batch)
        sessions.lease_arrivals()
        # The first worker still has 12 idle handlers; the turn moved on.
        assert [d.max_count for d in proposed] == [20, 20]
        handed = [len(s.handoffs) for s in sessions._sessions.values()]
        assert sorted(handed) == [0, 0, 1, 1]
        await close(pulls)

    asyncio.run(scenario())


MULTI = pb.LeaseRequest(
    namespace="ns",
    queues=[pb.QueueWeight(queue="q", weight=3), pb.QueueWeight(queue="r", weight=1)],
    credit=8,
    concurrency=4,
)


class RecordingGateway(Gateway):
    """The fake gateway, keeping the Dequeues the sessions make themselves."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[pb.DequeueRequest] = []

    async def run_authorized(self, name: str, request: Any, **options: Any) -> Any:
        if name == "Dequeue":
            copy = pb.DequeueRequest()
            copy.CopyFrom(request)
            self.asked.append(copy)
        return await super().run_authorized(name, request, **options)


def test_a_session_on_several_queues_asks_only_for_what_they_hold_ready() -> None:
    """Woken, a weighted multi-queue session Dequeues no more than its queues
    hold ready, and nothing (it parks) when they hold none: it used to ask for
    its whole credit on every applied write, through the log, for nothing."""

    async def scenario() -> None:
        ready = {("ns", "q"): 0, ("ns", "r"): 0}
        gateway = RecordingGateway()
        sessions = WorkerSessions(
            gateway,  # type: ignore[arg-type]
            Wakeup(),
            ready_count=lambda namespace, queue: ready[(namespace, queue)],
        )
        pulls = await parked(sessions, MULTI)
        for _ in range(4):
            await asyncio.sleep(0)
        assert gateway.asked == []  # parked: nothing is ready
        ready[("ns", "q")], ready[("ns", "r")] = 2, 1
        sessions._wakeup.notify()  # an applied enqueue
        for _ in range(5):
            await asyncio.sleep(0)
        assert [d.max_count for d in gateway.asked] == [3]
        assert [w.queue for w in gateway.asked[0].queues] == ["q", "r"]
        await close(pulls)

    asyncio.run(scenario())


def test_a_session_on_several_queues_is_handed_the_arrivals_of_each() -> None:
    async def scenario() -> None:
        sessions, proposed = handing_sessions()
        pulls = await parked(sessions, MULTI)
        for queue, count in (("r", 1), ("q", 6)):
            batch = pb.EnqueueBatchRequest(
                namespace="ns", queue=queue, messages=[pb.MessageSpec() for _ in range(count)]
            )
            sessions.saw_write("EnqueueBatch", batch)
        sessions.lease_arrivals()
        # Its whole weighted Dequeue each time: 1 for r's job; all of q's six,
        # three for its handlers still idle and three to wait in the worker
        # (its credit of 8 holds them, with r's one).
        assert [(d.max_count, [w.queue for w in d.queues]) for d in proposed] == [
            (1, ["q", "r"]),
            (6, ["q", "r"]),
        ]
        await close(pulls)

    asyncio.run(scenario())
