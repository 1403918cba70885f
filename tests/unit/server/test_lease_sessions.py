"""A lease session's credit: held by leased jobs until they settle or their
lease runs out, and by Dequeues in flight."""

from __future__ import annotations

from types import SimpleNamespace

from kokaq.protocol.v1 import kokaq_pb2 as pb
from kokaq.server.workers import _Session


def job(message_id: str, lock_id: str, deadline: int) -> SimpleNamespace:
    return SimpleNamespace(
        id=message_id, lock_id=lock_id, lock_deadline=deadline, namespace="ns", queue="q"
    )


def test_credit_comes_back_as_leases_run_out() -> None:
    dequeue = pb.DequeueRequest(namespace="ns", queues=[pb.QueueWeight(queue="q")])
    session = _Session("s", 5, dequeue)
    assert session.where == ("ns", "q")
    session.hold([job("a", "1", 200)])
    session.hold([job("b", "2", 100)])
    session.asked = 1
    assert session.free(now=50) == 2
    assert session.free(now=100) == 3  # b's lease ended at 100
    session.held.pop(("a", "1"))  # a settled
    assert session.free(now=150) == 4
    session.hold([job("c", "3", 300)])
    assert session.free(now=299) == 3
    assert session.free(now=300) == 4


def test_a_lease_refreshed_past_its_first_deadline_keeps_its_credit() -> None:
    """The worker's heartbeats refresh a long job's lease through the data
    plane; the session learns the new deadline from the engine."""
    deadlines = {("ns", "q", "a", "1"): 500}  # refreshed; b's lease really ended
    asked: list[tuple[str, str, str, str]] = []

    def lease_end(namespace: str, queue: str, message_id: str, lock_id: str) -> int | None:
        asked.append((namespace, queue, message_id, lock_id))
        return deadlines.get((namespace, queue, message_id, lock_id))

    dequeue = pb.DequeueRequest(namespace="ns", queues=[pb.QueueWeight(queue="q")])
    session = _Session("s", 2, dequeue, lease_end)
    session.hold([job("a", "1", 100), job("b", "2", 100)])
    assert session.free(now=99) == 0 and not asked  # nothing ended: no lookup
    assert session.free(now=100) == 1  # b's credit is back, a's is not
    assert sorted(asked) == [("ns", "q", "a", "1"), ("ns", "q", "b", "2")]
    assert session.free(now=499) == 1
    assert session.free(now=500) == 2
