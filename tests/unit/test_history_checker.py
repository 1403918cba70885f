"""The history checker of the fault tests finds each broken promise it
claims to find (a checker that cannot fail would prove nothing), and
passes a history that breaks none."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from kokaq.core import MessageState, MessageView
from tests.integration.history import History, Lease, Op, check, known_ids

LEASE_MS = 3_000
T0 = 1_800_000_000.0  # seconds, as time.time() gives them


def view(message_id: str, state: MessageState) -> MessageView:
    return MessageView(
        message_id, "n", "q", state, b"m", 0, None, None, 1, 0, 0, 0, None, 0, None, None,
        None, None, None, None,
    )  # fmt: skip


def lease(message_id: str, lock_id: str, deliveries: int, at: float) -> Lease:
    granted = int(at * 1000)
    return Lease(message_id, lock_id, deliveries, granted, granted + LEASE_MS)


def enqueue(at: float, *ids: str, outcome: Any = "ok", count: int = 0) -> Op:
    return Op(0, "enqueue", at, at + 0.01, outcome, message_ids=ids, count=count or len(ids))


def dequeue(at: float, *leases: Lease) -> Op:
    return Op(1, "dequeue", at - 0.001, at + 0.01, "ok", leases=leases)


def settle(kind: Any, at: float, held: Lease, outcome: Any = "ok") -> Op:
    return Op(1, kind, at, at + 0.01, outcome, message_ids=(held.message_id,), lock_id=held.lock_id)


def run(
    ops: list[Op], final: Mapping[str, MessageState | None], total: int | None = None
) -> list[str]:
    history = History(ops)
    views = {i: None if s is None else view(i, s) for i, s in final.items()}
    return check(history, views, len(views) if total is None else total)


def test_a_history_that_keeps_every_promise_passes() -> None:
    first = lease("a", "L1", 1, T0 + 1)
    expired = lease("b", "L1", 1, T0 + 1)  # one dequeue: one lock id for all it leases
    again = lease("b", "L3", 2, T0 + 1 + LEASE_MS / 1000 + 0.1)  # after L1's deadline
    ops = [
        enqueue(T0, "a", "b", "c"),
        dequeue(T0 + 1, first, expired),
        settle("ack", T0 + 2, first),
        dequeue(again.granted_ms / 1000, again),
        settle("nack", T0 + 5, again),
    ]
    final = {"a": MessageState.SUCCEEDED, "b": MessageState.READY, "c": MessageState.READY}
    assert run(ops, final) == []
    assert known_ids(History(ops)) == {"a", "b", "c"}


@pytest.mark.parametrize(
    ("ops", "final", "problem"),
    [
        ([enqueue(T0, "a")], {"a": None}, "a: lost"),
        ([enqueue(T0, "a"), enqueue(T0, "a")], {"a": MessageState.READY}, "two enqueues"),
        (
            [enqueue(T0, "a"), dequeue(T0 + 1, lease("a", "L1", 1, T0 + 1)),
             dequeue(T0 + 2, lease("a", "L2", 2, T0 + 2))],
            {"a": MessageState.LEASED},
            "a: leased again",
        ),
        (
            [enqueue(T0, "a"), dequeue(T0 + 1, lease("a", "L1", 1, T0 + 1)),
             dequeue(T0 + 2, lease("a", "L2", 1, T0 + 2))],
            {"a": MessageState.LEASED},
            "delivery 1 was handed out twice",
        ),
        (
            [enqueue(T0, "a"), dequeue(T0 + 1, lease("a", "L1", 1, T0 + 1)),
             settle("ack", T0 + 1.5, lease("a", "L1", 1, T0 + 1)),
             dequeue(T0 + 9, lease("a", "L2", 2, T0 + 9))],
            {"a": MessageState.SUCCEEDED},
            "delivered again (delivery 2) after its ack",
        ),
        (
            [enqueue(T0, "a"), dequeue(T0 + 1, lease("a", "L1", 1, T0 + 1)),
             settle("ack", T0 + 9, lease("a", "L1", 1, T0 + 1))],
            {"a": MessageState.SUCCEEDED},
            "ack accepted after lease L1 ended",
        ),
        (
            [enqueue(T0, "a"), dequeue(T0 + 1, lease("a", "L1", 1, T0 + 1)),
             settle("ack", T0 + 1.5, lease("a", "L1", 1, T0 + 1))],
            {"a": MessageState.READY},
            "a: acked, but ends",
        ),
        (
            [enqueue(T0, "a"), dequeue(T0 + 1, lease("a", "L1", 1, T0 + 1)),
             settle("ack", T0 + 1.5, lease("a", "L1", 1, T0 + 1), outcome="fail")],
            {"a": MessageState.SUCCEEDED},
            "no ack of it may have applied",
        ),
        ([enqueue(T0, "a"), dequeue(T0 + 1, lease("z", "L1", 1, T0 + 1))],
         {"a": MessageState.READY, "z": MessageState.LEASED}, "never enqueued"),
        ([enqueue(T0, "a")], {"a": MessageState.READY}, "the queue holds 2 messages"),
        ([enqueue(T0, "a"), dequeue(T0 + 1, lease("a", "L1", 1, T0 + 5))],
         {"a": MessageState.LEASED}, "outside its call"),
        ([enqueue(T0, "a")], {}, "was not read"),
    ],
)  # fmt: skip
def test_each_broken_promise_is_found(
    ops: list[Op], final: dict[str, MessageState | None], problem: str
) -> None:
    total = 2 if problem.startswith("the queue holds") else None
    problems = run(ops, final, total)
    assert any(problem in p for p in problems), problems


def test_unknown_outcomes_excuse_what_they_may_have_done() -> None:
    held = lease("a", "L1", 1, T0 + 1)
    ops = [
        enqueue(T0, "a"),
        enqueue(T0, outcome="info", count=5),  # may have stored five more
        dequeue(T0 + 1, held, lease("x", "L9", 1, T0 + 1)),  # x: from the unknown enqueue
        settle("nack", T0 + 1.5, held, outcome="fail"),  # may be a retry of one that applied
        dequeue(T0 + 2, lease("a", "L2", 2, T0 + 2)),
        settle("ack", T0 + 3, lease("a", "L2", 2, T0 + 2), outcome="info"),
    ]
    final = {"a": MessageState.SUCCEEDED, "x": MessageState.LEASED}
    assert run(ops, final, total=4) == []
    # More than the unknown enqueue could have stored is still found.
    assert any("the queue holds 7" in p for p in run(ops, final, total=7))
