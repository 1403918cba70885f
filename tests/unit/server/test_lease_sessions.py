"""A lease session's credit: held by leased jobs until they settle or their
lease runs out, and by Dequeues in flight."""

from __future__ import annotations

from types import SimpleNamespace

from kokaq.protocol.v1 import kokaq_pb2 as pb
from kokaq.server.workers import _Session


def test_credit_comes_back_as_leases_run_out() -> None:
    dequeue = pb.DequeueRequest(namespace="ns", queues=[pb.QueueWeight(queue="q")])
    session = _Session("s", 5, dequeue)
    assert session.where == ("ns", "q")
    session.hold([SimpleNamespace(id="a", lock_id="1", lock_deadline=200)])
    session.hold([SimpleNamespace(id="b", lock_id="2", lock_deadline=100)])
    session.asked = 1
    assert session.free(now=50) == 2
    assert session.free(now=100) == 3  # b's lease ended at 100
    session.held.pop(("a", "1"))  # a settled
    assert session.free(now=150) == 4
    session.hold([SimpleNamespace(id="c", lock_id="3", lock_deadline=300)])
    assert session.free(now=299) == 3
    assert session.free(now=300) == 4
