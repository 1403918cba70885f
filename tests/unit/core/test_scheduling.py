"""Weighted scheduling through the engine: configuration, shares, keys, cost,
multi-queue dequeue, reprioritizing, reweighting, quotas, retry position,
explain, and snapshots that keep the scheduler's state."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kokaq.core import (
    MAX_PRIORITY,
    Band,
    ConfigError,
    Engine,
    FailureReason,
    Headers,
    InvalidArgument,
    InvalidState,
    MessageFilter,
    MessageSpec,
    MessageState,
    QueueConfig,
    QueueFull,
    QueueNotFound,
    RetryPosition,
    SchedulingPolicy,
)
from tests.unit.core.conftest import Harness

BANDS_8_3_1 = (Band(0, 9, 1), Band(10, 19, 3), Band(20, MAX_PRIORITY, 8))


def scheduled(**fields: Any) -> QueueConfig:
    return QueueConfig(scheduling=SchedulingPolicy(**fields))


# -- configuration ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"bands": (Band(0, 9, 0), Band(10, MAX_PRIORITY, 1))}, "bands[0].weight", "1"),
        ({"bands": (Band(0, 9, -2), Band(10, MAX_PRIORITY, 1))}, "bands[0].weight", "1"),
        ({"bands": (Band(0, 9), Band(5, MAX_PRIORITY))}, "bands[1].min_priority", "overlaps"),
        ({"bands": (Band(10, MAX_PRIORITY), Band(0, 9))}, "bands[1].min_priority", "lowest"),
        ({"bands": (Band(0, 9), Band(12, MAX_PRIORITY))}, "bands[1].min_priority", "10-11"),
        ({"bands": (Band(5, MAX_PRIORITY),)}, "bands[0].min_priority", "0-4 unmapped"),
        ({"bands": (Band(0, 100),)}, "bands[0].max_priority", "unmapped"),
        ({"bands": (Band(9, 3),)}, "bands[0].max_priority", "below"),
        ({"bands": [Band(0, MAX_PRIORITY)]}, "bands", "tuple"),
        ({"bands": ("x",)}, "bands[0]", "Band"),
        ({"default_key_weight": 0}, "default_key_weight", "1"),
        ({"key_weights": {"a": 0}}, "key_weights[a]", "1"),
        ({"key_weights": {"": 1}}, "key_weights", "printable"),
        ({"aging_interval_ms": 0}, "aging_interval_ms", "1"),
        ({"retry_position": "middle"}, "retry_position", "ahead"),
        ({"max_per_key": 0}, "max_per_key", "1"),
    ],
)
def test_bad_scheduling_config_is_a_precise_config_error(
    fields: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        scheduled(**fields).validate()
    assert raised.value.field == f"scheduling.{field}"
    assert words in str(raised.value)


def test_bands_must_cover_the_queues_own_priority_range() -> None:
    config = QueueConfig(
        min_priority=10, max_priority=99, scheduling=SchedulingPolicy(bands=(Band(10, 99),))
    )
    config.validate()  # covering exactly the queue's range is enough
    with pytest.raises(ConfigError) as raised:
        QueueConfig(
            min_priority=0, max_priority=99, scheduling=SchedulingPolicy(bands=(Band(10, 99),))
        ).validate()
    assert raised.value.field == "scheduling.bands[0].min_priority"


def test_scheduling_config_round_trips_and_rejects_unknown_keys() -> None:
    config = scheduled(
        bands=BANDS_8_3_1,
        key_weights={"gold": 5},
        aging_interval_ms=1000,
        retry_position=RetryPosition.BEHIND,
        max_per_key=7,
    )
    assert QueueConfig.from_dict(config.to_dict()) == config
    data = config.to_dict()
    data["scheduling"]["bands"][1]["colour"] = "red"
    with pytest.raises(ConfigError) as raised:
        QueueConfig.from_dict(data)
    assert raised.value.field == "scheduling.bands[1].colour"
    with pytest.raises(ConfigError) as raised:
        QueueConfig.from_dict({"scheduling": {"weights": 1}})
    assert raised.value.field == "scheduling.weights"


def test_a_rejected_update_changes_nothing(h: Harness) -> None:
    h.put(priority=3)
    before = h.engine.snapshot()
    with pytest.raises(ConfigError):
        h.engine.update_queue("ns", "q", scheduled(bands=(Band(1, MAX_PRIORITY),)), now=h.now)
    assert h.engine.snapshot() == before


# -- shares, keys and cost -----------------------------------------------------------


def fill(h: Harness, count: int, **fields: Any) -> None:
    for _ in range(count):
        h.put(**fields)


def test_bands_split_dispatches_8_3_1_and_stats_report_it() -> None:
    h = Harness(scheduled(bands=BANDS_8_3_1))
    for priority in (5, 15, 25):
        fill(h, 300, priority=priority)
    counts = Counter(m.priority for m in h.take(240))
    assert (counts[5], counts[15], counts[25]) == (20, 60, 160), counts
    bands = h.engine.scheduling_stats("ns", "q").bands
    assert [b.dispatched for b in bands] == [20, 60, 160]
    assert [b.ready for b in bands] == [280, 240, 140]
    assert [round(b.achieved_share, 4) for b in bands] == [0.0833, 0.25, 0.6667]
    assert [round(b.configured_share, 4) for b in bands] == [0.0833, 0.25, 0.6667]


def test_a_tenants_flood_does_not_starve_another(h: Harness) -> None:
    fill(h, 500, fairness_key="noisy")
    fill(h, 5, fairness_key="quiet")
    keys = [m.fairness_key for m in h.take(10)]
    assert keys.count("quiet") == 5, keys
    shares = {k.key: k for k in h.engine.scheduling_stats("ns", "q").keys}
    assert shares["noisy"].ready == 495 and "quiet" not in shares  # an idle key is gone


def test_key_weights_and_cost_decide_the_split() -> None:
    h = Harness(scheduled(key_weights={"gold": 3}))
    fill(h, 100, fairness_key="gold")
    fill(h, 100, fairness_key="free")
    counts = Counter(m.fairness_key for m in h.take(40))
    assert (counts["gold"], counts["free"]) == (30, 10), counts
    # Cost: each "heavy" message costs 3, so equal weights give it a third
    # of the dispatches of "light".
    h = Harness()
    fill(h, 100, fairness_key="heavy", cost=3)
    fill(h, 100, fairness_key="light")
    counts = Counter(m.fairness_key for m in h.take(40))
    assert (counts["heavy"], counts["light"]) == (10, 30), counts


def test_one_band_without_keys_is_strict_priority(h: Harness) -> None:
    for priority in (3, 9, 1, 9, 5):
        h.put(priority=priority)
    assert [m.priority for m in h.take(5)] == [9, 9, 5, 3, 1]


# -- weighted multi-queue dequeue ------------------------------------------------------


def two_queues() -> Harness:
    h = Harness()
    h.engine.create_queue("ns", "low", now=h.now)
    for i in range(200):
        h.put()
        h.engine.enqueue("ns", "low", b"x", message_id=f"l{i}", now=h.now)
    return h


def test_weighted_dequeue_is_fair_across_calls() -> None:
    h = two_queues()
    taken: Counter[str] = Counter()
    for i in range(40):  # one message per call: the mix's state carries over
        (m,) = h.engine.dequeue_weighted("ns", [("q", 3), ("low", 1)], lock_id=f"W{i}", now=h.now)
        taken[m.queue] += 1
    assert (taken["q"], taken["low"]) == (30, 10), taken
    batch = h.engine.dequeue_weighted(
        "ns", [("q", 3), ("low", 1)], lock_id="B", now=h.now, max_count=8
    )
    assert Counter(m.queue for m in batch) == {"q": 6, "low": 2}
    assert all(m.lock_id == "B" and m.state is MessageState.LEASED for m in batch)


def test_weighted_dequeue_serves_what_is_there() -> None:
    h = two_queues()
    h.engine.purge_queue("ns", "q", now=h.now)
    got = h.engine.dequeue_weighted(
        "ns", [("q", 9), ("low", 1)], lock_id="W", now=h.now, max_count=5
    )
    assert [m.queue for m in got] == ["low"] * 5


@pytest.mark.parametrize(
    ("queues", "field"),
    [
        ([], "queues"),
        ("q", "queues"),
        ([("q", 0)], "queues[0].weight"),
        ([("q", 1), ("q", 2)], "queues[1].queue"),
        ([("q", 1), ("bad name", 1)], "queues[1].queue"),
        ([("q",)], "queues[0]"),
        ([(f"q{i}", 1) for i in range(33)], "queues"),
    ],
)
def test_weighted_dequeue_bad_input(queues: Any, field: str) -> None:
    h = two_queues()
    before = h.engine.snapshot()
    with pytest.raises(InvalidArgument) as raised:
        h.engine.dequeue_weighted("ns", queues, lock_id="W", now=h.now)
    assert raised.value.field == field
    assert h.engine.snapshot() == before


def test_weighted_dequeue_of_a_missing_queue_names_it() -> None:
    h = two_queues()
    with pytest.raises(QueueNotFound) as raised:
        h.engine.dequeue_weighted("ns", [("q", 1), ("nope", 1)], lock_id="W", now=h.now)
    assert raised.value.queue == "nope"


# -- reprioritize and reweighting ------------------------------------------------------


def test_reprioritize_one_message_moves_it(h: Harness) -> None:
    for _ in range(3):
        h.put(priority=5)
    assert h.engine.reprioritize("ns", "q", 9, now=h.now, message_id="m3") == 1
    assert [m.id for m in h.take(3)] == ["m3", "m1", "m2"]
    h.engine.ack("ns", "q", "m3", h.get("m3").lock_id or "", now=h.now)
    with pytest.raises(InvalidState):
        h.engine.reprioritize("ns", "q", 1, now=h.now, message_id="m3")


def test_reprioritize_by_filter_is_exact() -> None:
    h = Harness()
    h.put(priority=1, fairness_key="a")  # m1
    h.put(priority=5, fairness_key="a", headers=Headers(type="email"))  # m2
    h.put(priority=5, fairness_key="b", headers=Headers(type="email"))  # m3
    h.put(priority=5, fairness_key="a", delay_ms=10_000)  # m4: delayed
    h.advance(10)
    h.put(priority=5, fairness_key="a")  # m5: later
    where = MessageFilter(
        fairness_key="a", min_priority=2, max_priority=8, states=(MessageState.READY,)
    )
    assert h.engine.reprioritize("ns", "q", 7, now=h.now, where=where) == 2  # m2, m5
    assert [h.get(f"m{i}").priority for i in range(1, 6)] == [1, 7, 5, 5, 7]
    email = MessageFilter(type="email")
    assert h.engine.reprioritize("ns", "q", 0, now=h.now, where=email) == 2
    early = MessageFilter(enqueued_before=h.now)
    assert h.engine.reprioritize("ns", "q", 3, now=h.now, where=early) == 4
    assert (
        h.engine.reprioritize("ns", "q", 3, now=h.now, where=MessageFilter(enqueued_after=h.now))
        == 0
    )
    assert sorted(m.id for m in h.take(10)) == ["m1", "m2", "m3", "m5"]


@pytest.mark.parametrize(
    ("call", "field"),
    [
        ({"priority": -1, "message_id": "m1"}, "priority"),
        ({"priority": 1}, "message_id"),
        ({"priority": 1, "message_id": "m1", "where": MessageFilter()}, "message_id"),
        ({"priority": 1, "where": {"fairness_key": "a"}}, "where"),
        (
            {"priority": 1, "where": MessageFilter(min_priority=5, max_priority=2)},
            "where.max_priority",
        ),
        ({"priority": 1, "where": MessageFilter(states=(MessageState.LEASED,))}, "where.states"),
        ({"priority": 1, "where": MessageFilter(fairness_key="")}, "where.fairness_key"),
    ],
)
def test_reprioritize_bad_input(h: Harness, call: dict[str, Any], field: str) -> None:
    h.put()
    before = h.engine.snapshot()
    with pytest.raises(InvalidArgument) as raised:
        h.engine.reprioritize("ns", "q", now=h.now, **call)
    assert raised.value.field == field
    assert h.engine.snapshot() == before


def test_filters_from_the_wire_name_unknown_keys() -> None:
    assert MessageFilter.from_dict({"states": ["dead"], "type": "x"}) == MessageFilter(
        states=(MessageState.DEAD,), type="x"
    )
    for data, field in (
        ({"tenant": "a"}, "filter.tenant"),
        ({"states": ["gone"]}, "filter.states"),
        ({"states": "ready"}, "filter.states"),
        ([], "filter"),
    ):
        with pytest.raises(InvalidArgument) as raised:
            MessageFilter.from_dict(data)
        assert raised.value.field == field


def test_reweighting_reorders_the_backlog_without_loss() -> None:
    h = Harness()
    for priority in (5, 15, 25):
        fill(h, 50, priority=priority)
    first = h.take(3)
    assert [m.priority for m in first] == [25, 25, 25]  # strict: the top band only
    h.engine.update_queue("ns", "q", scheduled(bands=BANDS_8_3_1), now=h.now)
    rest = h.take(1000)
    assert Counter(m.priority for m in rest[:12]) == {25: 8, 15: 3, 5: 1}
    ids = [m.id for m in first + rest]
    assert len(ids) == len(set(ids)) == 150


# -- quotas and the place a returning message takes ----------------------------------


def test_a_key_quota_fails_only_that_key() -> None:
    h = Harness(scheduled(max_per_key=2))
    h.put(fairness_key="a")
    h.put(fairness_key="a")
    before = h.engine.snapshot()
    with pytest.raises(QueueFull) as raised:
        h.put(fairness_key="a")
    assert (raised.value.fairness_key, raised.value.limit) == ("a", 2)
    assert h.engine.snapshot() == before
    h.put(fairness_key="b")
    h.put()  # messages without a key have no quota
    h.put()
    h.put()
    with pytest.raises(QueueFull):
        h.engine.enqueue_batch(
            "ns",
            "q",
            [MessageSpec(payload=b"", fairness_key="b")] * 2,
            message_ids=["x1", "x2"],
            now=h.now,
        )
    taken = h.take_one()
    while taken.fairness_key != "a":
        taken = h.take_one()
    h.engine.ack("ns", "q", taken.id, taken.lock_id or "", now=h.now)
    h.put(fairness_key="a")  # room again


def test_a_quota_switched_on_later_counts_what_is_held(h: Harness) -> None:
    fill(h, 3, fairness_key="a")
    h.engine.update_queue("ns", "q", scheduled(max_per_key=3), now=h.now)
    with pytest.raises(QueueFull):
        h.put(fairness_key="a")
    restored = Engine.restore(h.engine.snapshot())
    with pytest.raises(QueueFull):
        restored.enqueue("ns", "q", b"", message_id="z", now=h.now, fairness_key="a")


@pytest.mark.parametrize(("position", "order"), [("ahead", ["m1", "m2"]), ("behind", ["m2", "m1"])])
def test_retry_position(position: str, order: list[str]) -> None:
    h = Harness(scheduled(retry_position=position))  # plain strings work too
    h.put(priority=5)
    h.put(priority=5)
    taken = h.take_one()
    h.engine.nack("ns", "q", taken.id, taken.lock_id or "", now=h.now, delay_ms=0)
    assert [m.id for m in h.take(2)] == order


def test_a_returning_message_keeps_its_band_key_and_age() -> None:
    h = Harness(scheduled(bands=BANDS_8_3_1, aging_interval_ms=1000))
    h.put(priority=15, fairness_key="t")
    created = h.get("m1").created_at
    h.advance(5_000)
    taken = h.take_one(visibility_timeout_ms=1_000)
    h.advance(2_000)  # the lease runs out
    h.engine.tick(h.now)
    explained = h.engine.explain("ns", "q", "m1")
    assert (explained.band, explained.fairness_key, explained.priority) == (1, "t", 15)
    assert explained.rank == 15 * 1000 - created
    assert explained.effective_priority == 15 + 7  # 7 s waited since the first enqueue
    assert h.get("m1").failure_reason is FailureReason.VISIBILITY_TIMEOUT_EXCEEDED
    assert taken.id == "m1"


# -- explain and snapshots -------------------------------------------------------------


def test_explain_counts_the_messages_ahead() -> None:
    h = Harness(scheduled(bands=BANDS_8_3_1))
    for priority in (5, 15, 25):
        fill(h, 20, priority=priority, fairness_key="t")
    order = [m.id for m in h.engine.peek("ns", "q", now=h.now, count=60)]
    before = h.engine.snapshot()
    for position in (0, 7, 33, 59):
        explained = h.engine.explain("ns", "q", order[position])
        assert explained.ahead == position
        assert explained.band_vtime is not None and explained.key_start is not None
    assert h.engine.snapshot() == before  # a read: nothing moved
    leased = h.take_one()
    assert h.engine.explain("ns", "q", leased.id).ahead is None


def test_a_restored_engine_makes_the_same_choices() -> None:
    h = Harness(scheduled(bands=BANDS_8_3_1, key_weights={"k1": 2}))
    h.engine.create_queue("ns", "other", now=h.now)
    for i in range(120):
        h.put(priority=(i * 7) % 30, fairness_key=f"k{i % 4}", cost=1 + i % 3)
        h.engine.enqueue("ns", "other", b"", message_id=f"o{i}", now=h.now)
    h.take(17)
    h.engine.dequeue_weighted("ns", [("q", 2), ("other", 1)], lock_id="W0", now=h.now, max_count=5)
    twin = Engine.restore(h.engine.snapshot())
    for engine in (h.engine, twin):
        assert engine.snapshot() == twin.snapshot()
    for step in range(30):
        mix = [("q", 2), ("other", 1)]
        a = h.engine.dequeue_weighted("ns", mix, lock_id=f"W{step}", now=h.now, max_count=3)
        b = twin.dequeue_weighted("ns", mix, lock_id=f"W{step}", now=h.now, max_count=3)
        assert [m.id for m in a] == [m.id for m in b]
    assert h.engine.snapshot() == twin.snapshot()


# -- a random walk: two engines agree, and nothing is lost or duplicated ---------------

walk = st.lists(
    st.tuples(
        st.sampled_from(
            ["put", "put", "put", "take", "nack", "ack", "reprioritize", "reweight", "mix"]
        ),
        st.integers(0, 40),
        st.integers(0, 5),
    ),
    max_size=80,
)


@given(walk)
def test_random_walks_are_deterministic_and_lose_nothing(
    steps: list[tuple[str, int, int]],
) -> None:
    engines = [Harness(scheduled(bands=BANDS_8_3_1)) for _ in range(2)]
    for h in engines:
        h.engine.create_queue("ns", "other", now=h.now)
    leases: dict[str, str] = {}  # message id -> lock id, of q's live leases
    enqueued: set[str] = set()
    acked: set[str] = set()
    for index, (op, n, k) in enumerate(steps):
        results = [step(h, op, n, k, index, dict(leases)) for h in engines]
        assert results[0] == results[1]
        assert engines[0].engine.snapshot() == engines[1].engine.snapshot()
        ids = results[0]
        if op == "put":
            enqueued |= set(ids)
        elif op in ("take", "mix"):
            leases.update((m, lock) for m, lock in zip(ids[::2], ids[1::2], strict=True))
        elif op in ("ack", "nack") and ids:
            del leases[ids[0]]
            if op == "ack":
                acked.add(ids[0])
    restored = Engine.restore(engines[0].engine.snapshot())
    end = 10**9  # every lease has run out: all that is left comes back
    drained = [
        m.id for m in engines[0].engine.dequeue("ns", "q", lock_id="end", now=end, max_count=1000)
    ]
    again = [m.id for m in restored.dequeue("ns", "q", lock_id="end", now=end, max_count=1000)]
    assert drained == again
    assert len(drained) == len(set(drained))
    assert set(drained) == enqueued - acked


def step(h: Harness, op: str, n: int, k: int, index: int, leases: dict[str, str]) -> list[str]:
    """One operation; returns what identifies its outcome (ids, lock ids, counts)."""
    engine = h.engine
    if op == "put":
        result = engine.enqueue(
            "ns",
            "q",
            b"",
            message_id=f"p{index}",
            now=h.now,
            priority=n % 30,
            fairness_key=f"k{k}" if k else None,
            cost=1 + n % 3,
        )
        return [result.message_id]
    if op == "take":
        return [x for m in h.take(1 + k) for x in (m.id, m.lock_id or "")]
    if op == "mix":
        mix = [("q", 1 + k), ("other", 1)]
        got = engine.dequeue_weighted("ns", mix, lock_id=f"x{index}", now=h.now, max_count=2)
        return [x for m in got if m.queue == "q" for x in (m.id, m.lock_id or "")]
    if op in ("ack", "nack"):
        if not leases:
            return []
        message_id = sorted(leases)[n % len(leases)]
        if op == "ack":
            engine.ack("ns", "q", message_id, leases[message_id], now=h.now)
        else:
            engine.nack("ns", "q", message_id, leases[message_id], now=h.now, delay_ms=0)
        return [message_id]
    if op == "reprioritize":
        where = MessageFilter(fairness_key=f"k{k}") if k else MessageFilter(min_priority=n % 30)
        return [str(engine.reprioritize("ns", "q", (n * 3) % 30, now=h.now, where=where))]
    weights = (1 + n % 4, 1 + k, 1 + (n + k) % 5)
    bands = tuple(
        Band(b.min_priority, b.max_priority, w) for b, w in zip(BANDS_8_3_1, weights, strict=True)
    )
    policy = scheduled(bands=bands, key_weights={"k1": 1 + n % 3})
    engine.update_queue("ns", "q", policy, now=h.now)
    return []
