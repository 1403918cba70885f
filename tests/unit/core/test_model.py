"""Property tests: the engine against the naive model, and snapshot equivalence."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kokaq.core import (
    BackoffPolicy,
    Engine,
    KokaqError,
    QueueConfig,
    RetentionPolicy,
)

from .model import DEAD, DELAYED, LEASED, READY, SUCCEEDED, Model

CONFIG = QueueConfig(
    visibility_timeout_ms=1_000,
    max_deliveries=3,
    backoff=BackoffPolicy(base_ms=100, factor=2.0, cap_ms=400, jitter=0.5),
    retention=RetentionPolicy(period_ms=1_500, max_count=4),
    dedup_window_ms=500,
    max_length=12,
)

priorities = st.integers(0, 3)
maybe_delay = st.none() | st.integers(0, 300)
maybe_ttl = st.none() | st.integers(1, 1_500)
dedup_keys = st.none() | st.sampled_from(["k0", "k1", "k2"])
maybe_max_deliveries = st.none() | st.integers(0, 3)


def outcome(call: Any) -> Any:
    try:
        return call()
    except KokaqError as error:
        return type(error).__name__


class EngineVersusModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 1_000
        self.engine = Engine()
        self.engine.create_namespace("ns", now=self.now)
        self.engine.create_queue("ns", "q", CONFIG, now=self.now)
        self.model = Model(CONFIG)
        self.ids = 0
        self.locks = 0
        self.leases: dict[str, str] = {}  # message id -> the last lock id it was leased under

    def known_ids(self) -> list[str]:
        return sorted(self.model.messages) or ["nothing"]

    def some_ids(self, data: st.DataObject) -> list[str]:
        return data.draw(st.lists(st.sampled_from(self.known_ids()), max_size=2, unique=True))

    def pick_lock(self, data: st.DataObject, message_id: str) -> str:
        right = self.leases.get(message_id, "L0")
        return data.draw(st.sampled_from([right, right, "Lwrong"]))

    # -- rules ---------------------------------------------------------------------

    @rule(
        priority=priorities,
        delay=maybe_delay,
        ttl=maybe_ttl,
        dedup=dedup_keys,
        max_deliveries=maybe_max_deliveries,
    )
    def enqueue(
        self,
        priority: int,
        delay: int | None,
        ttl: int | None,
        dedup: str | None,
        max_deliveries: int | None,
    ) -> None:
        self.ids += 1
        message_id = f"m{self.ids}"
        expected = self.model.enqueue(
            message_id, self.now, priority, delay, ttl, dedup, max_deliveries
        )

        def call() -> tuple[str, bool]:
            result = self.engine.enqueue(
                "ns",
                "q",
                b"p",
                message_id=message_id,
                now=self.now,
                priority=priority,
                delay_ms=delay,
                ttl_ms=ttl,
                dedup_key=dedup,
                max_deliveries=max_deliveries,
            )
            return result.message_id, result.duplicate

        assert outcome(call) == expected

    @rule(count=st.integers(1, 4), lease=st.none() | st.integers(1_000, 2_000))
    def dequeue(self, count: int, lease: int | None) -> None:
        self.locks += 1
        lock = f"L{self.locks}"
        expected = self.model.dequeue(self.now, count, lock, lease or CONFIG.visibility_timeout_ms)
        got = self.engine.dequeue(
            "ns", "q", lock_id=lock, now=self.now, max_count=count, visibility_timeout_ms=lease
        )
        assert [m.id for m in got] == expected
        for message_id in expected:
            self.leases[message_id] = lock

    @rule(count=st.integers(1, 5))
    def peek(self, count: int) -> None:
        expected = self.model.peek(self.now, count)
        assert [m.id for m in self.engine.peek("ns", "q", now=self.now, count=count)] == expected

    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        message_id = data.draw(st.sampled_from(self.known_ids()))
        lock = self.pick_lock(data, message_id)
        expected = self.model.ack(message_id, lock, self.now)
        got = outcome(lambda: self.engine.ack("ns", "q", message_id, lock, now=self.now))
        assert got == expected

    @rule(data=st.data(), delay=st.none() | st.integers(0, 200), dead_letter=st.booleans())
    def nack(self, data: st.DataObject, delay: int | None, dead_letter: bool) -> None:
        message_id = data.draw(st.sampled_from(self.known_ids()))
        lock = self.pick_lock(data, message_id)
        expected = self.model.nack(message_id, lock, self.now, delay, dead_letter)
        got = outcome(
            lambda: (
                self.engine.nack(
                    "ns",
                    "q",
                    message_id,
                    lock,
                    now=self.now,
                    delay_ms=delay,
                    dead_letter=dead_letter,
                ).outcome
            )
        )
        assert got == expected

    @rule(
        data=st.data(),
        kind=st.sampled_from(["extend", "refresh", "set"]),
        amount=st.integers(1_000, 3_000),
    )
    def relock(self, data: st.DataObject, kind: str, amount: int) -> None:
        message_id = data.draw(st.sampled_from(self.known_ids()))
        lock = self.pick_lock(data, message_id)
        # Extend from the deadline held, as a retrying client does: the current
        # one, a stale one (before an earlier extend), or none.
        found = self.model.messages.get(message_id)
        held = (found.lock_deadline if found else None) or 0
        stale = st.sampled_from([0, 1_000, 2_000]).map(lambda back: max(0, held - back))
        from_deadline = data.draw(st.one_of(st.none(), stale)) if kind == "extend" else None
        expected = self.model.relock(message_id, lock, self.now, kind, amount, from_deadline)
        engine = self.engine
        calls = {
            "extend": lambda: engine.extend(
                "ns",
                "q",
                message_id,
                lock,
                add_ms=amount,
                now=self.now,
                from_deadline=from_deadline,
            ),
            "refresh": lambda: engine.refresh("ns", "q", message_id, lock, now=self.now),
            "set": lambda: engine.set_visibility_timeout(
                "ns", "q", message_id, lock, timeout_ms=amount, now=self.now
            ),
        }
        assert outcome(calls[kind]) == expected

    @rule(data=st.data(), delay=st.integers(0, 100))
    def release(self, data: st.DataObject, delay: int) -> None:
        message_id = data.draw(st.sampled_from(self.known_ids()))
        lock = self.pick_lock(data, message_id)
        expected = self.model.release(message_id, lock, self.now, delay)
        got = outcome(
            lambda: self.engine.release("ns", "q", message_id, lock, now=self.now, delay_ms=delay)
        )
        assert got == expected

    @rule(ms=st.sampled_from([0, 1, 50, 99, 100, 400, 999, 1_000, 1_600]))
    def advance(self, ms: int) -> None:
        self.now += ms

    @rule()
    def tick(self) -> None:
        self.model.apply_due(self.now)
        self.engine.tick(self.now)

    @rule(data=st.data(), everything=st.booleans())
    def redrive(self, data: st.DataObject, everything: bool) -> None:
        ids = None if everything else self.some_ids(data)
        expected = self.model.redrive(ids, self.now)
        got = outcome(lambda: self.engine.redrive("ns", "q", now=self.now, message_ids=ids))
        assert got == expected

    @rule(data=st.data(), everything=st.booleans())
    def purge_dead(self, data: st.DataObject, everything: bool) -> None:
        ids = None if everything else self.some_ids(data)
        expected = self.model.purge_dead(ids)
        got = outcome(lambda: self.engine.purge_dead("ns", "q", now=self.now, message_ids=ids))
        assert got == expected

    @precondition(lambda self: self.ids % 7 == 3)
    @rule()
    def purge(self) -> None:
        assert self.engine.purge_queue("ns", "q", now=self.now) == self.model.purge_ready()

    # -- what must hold after every step --------------------------------------------

    @invariant()
    def same_stats(self) -> None:
        stats = self.engine.stats("ns", "q", now=self.now)
        m = self.model
        ready = m.in_state(READY)
        expected_age = None if not ready else self.now - min(r.created_at for r in ready)
        assert (stats.ready, stats.delayed, stats.leased, stats.succeeded, stats.dead) == (
            len(ready),
            len(m.in_state(DELAYED)),
            len(m.in_state(LEASED)),
            len(m.in_state(SUCCEEDED)),
            len(m.in_state(DEAD)),
        )
        assert stats.oldest_ready_age_ms == expected_age
        assert stats.totals == m.totals

    @invariant()
    def same_messages(self) -> None:
        for message_id, expected in self.model.messages.items():
            view = self.engine.get_message("ns", "q", message_id)
            assert (
                view.state,
                view.deliveries,
                view.priority,
                view.lock_id,
                view.lock_deadline,
                view.visible_at,
                view.expires_at,
                view.updated_at,
                view.failure_reason,
            ) == (
                expected.state,
                expected.deliveries,
                expected.priority,
                expected.lock_id,
                expected.lock_deadline,
                expected.visible_at,
                expected.expires_at,
                expected.updated_at,
                expected.failure_reason,
            ), message_id
        assert [v.id for v in self.engine.list_dead("ns", "q", limit=1000).messages] == [
            m.id for m in self.model.dead_order()
        ]


TestEngineVersusModel = EngineVersusModel.TestCase


# -- snapshot equivalence ------------------------------------------------------------

operations = st.lists(
    st.tuples(
        st.sampled_from(["enqueue", "dequeue", "ack", "nack", "advance", "tick", "release"]),
        st.integers(0, 50),
    ),
    min_size=1,
    max_size=40,
)


def apply(engine: Engine, step: int, op: str, arg: int, clock: list[int]) -> Any:
    """One operation; returns a comparable result (errors by name)."""
    now = clock[0]
    if op == "enqueue":
        return outcome(
            lambda: engine.enqueue(
                "ns",
                "q",
                b"x",
                message_id=f"s{step}",
                now=now,
                priority=arg % 4,
                delay_ms=arg * 10 if arg % 3 == 0 else None,
            )
        )
    if op == "dequeue":
        return outcome(
            lambda: [
                m.id
                for m in engine.dequeue(
                    "ns", "q", lock_id=f"L{step}", now=now, max_count=1 + arg % 3
                )
            ]
        )
    if op in ("ack", "nack", "release"):
        target = f"s{arg}"
        try:
            view = engine.get_message("ns", "q", target)
        except KokaqError as error:
            return type(error).__name__
        lock = view.lock_id or "none"
        if op == "ack":
            return outcome(lambda: engine.ack("ns", "q", target, lock, now=now))
        if op == "nack":
            return outcome(lambda: engine.nack("ns", "q", target, lock, now=now))
        return outcome(lambda: engine.release("ns", "q", target, lock, now=now))
    if op == "advance":
        clock[0] += arg * 40
        return None
    return engine.tick(now)


@given(before=operations, after=operations)
def test_a_restored_snapshot_behaves_identically(
    before: list[tuple[str, int]], after: list[tuple[str, int]]
) -> None:
    engine = Engine()
    engine.create_namespace("ns", now=1)
    engine.create_queue("ns", "q", CONFIG, now=1)
    clock = [1]
    for step, (op, arg) in enumerate(before):
        apply(engine, step, op, arg, clock)
    restored = Engine.restore(engine.snapshot())
    clock_a, clock_b = [clock[0]], [clock[0]]
    for step, (op, arg) in enumerate(after, start=len(before)):
        assert apply(engine, step, op, arg, clock_a) == apply(restored, step, op, arg, clock_b)
    assert engine.snapshot() == restored.snapshot()
