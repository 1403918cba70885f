"""The weighted scheduler against the brute-force reference, and its guarantees.

Properties: every choice equals the reference's (so the heaps, lazy deletion
and fast paths change nothing); shares and the lag bound of weighted fair
queueing for bands and for keys; no credit for idle flows; the aging bound;
peek and snapshots leave no trace.
"""

from __future__ import annotations

import itertools
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from kokaq.core.config import Band, SchedulingPolicy
from kokaq.core.message import Message
from kokaq.core.validation import MAX_PRIORITY
from kokaq.core.weighted import WeightedScheduler
from tests.unit.core.wfq_reference import RefMessage, RefScheduler

KEYS = [None, "a", "b", "c"]


def make_bands(weights: list[int]) -> list[tuple[int, int, int]]:
    """Band i holds priority i (the last one everything above)."""
    bands = [(i, i, w) for i, w in enumerate(weights)]
    low, _, weight = bands[-1]
    bands[-1] = (low, MAX_PRIORITY, weight)
    return bands


def policy(bands: list[tuple[int, int, int]], **fields: object) -> SchedulingPolicy:
    return SchedulingPolicy(bands=tuple(Band(*b) for b in bands), **fields)  # type: ignore[arg-type]


class Pair:
    """The real scheduler and the reference, fed the same messages; without
    ``checked`` the reference is skipped (the properties below hold of the
    real scheduler, whose equality with the reference is tested first)."""

    def __init__(
        self,
        weights: list[int],
        key_weights: dict[str, int] | None = None,
        aging: int | None = None,
        checked: bool = False,
    ) -> None:
        self.checked = checked
        bands = make_bands(weights)
        self.real = WeightedScheduler(
            policy(bands, key_weights=key_weights or {}, aging_interval_ms=aging)
        )
        self.ref = RefScheduler(bands, key_weights, aging)
        self.seq = itertools.count(1)
        self.live: dict[str, tuple[Message, RefMessage]] = {}
        self.added: dict[str, Message] = {}

    def add(self, priority: int, key: str | None, cost: int = 1, created_at: int = 0) -> str:
        seq = next(self.seq)
        mid = f"m{seq}"
        real = Message(mid, b"", priority, seq, created_at, created_at, None, None, key, cost)
        ref = RefMessage(mid, priority, seq, created_at, key, cost)
        self.real.add(real)
        if self.checked:
            self.ref.add(ref)
        self.live[mid] = (real, ref)
        self.added[mid] = real
        return mid

    def remove(self, mid: str) -> None:
        real, ref = self.live.pop(mid)
        self.real.remove(real)
        if self.checked:
            self.ref.remove(ref)

    def pop(self) -> str | None:
        real = self.real.pop()
        if self.checked:
            ref = self.ref.pop()
            assert (real and real.id) == (ref and ref.id)
        if real is None:
            return None
        del self.live[real.id]
        return real.id


ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "add", "add", "pop", "pop", "remove", "peek", "snapshot"]),
        st.integers(0, 3),  # priority (band)
        st.sampled_from(KEYS),
        st.sampled_from([1, 1, 1, 2, 5]),  # cost
        st.integers(0, 10**6),
    ),
    max_size=200,
)


@given(ops, st.lists(st.integers(1, 9), min_size=1, max_size=4), st.booleans())
def test_every_choice_matches_the_reference(
    steps: list[tuple[str, int, str | None, int, int]], weights: list[int], aged: bool
) -> None:
    pair = Pair(weights, {"a": 3, "b": 2}, aging=7 if aged else None, checked=True)
    clock = 0
    for op, priority, key, cost, n in steps:
        clock += n % 50
        if op == "add":
            pair.add(priority % len(weights) + (n % 3 if aged else 0), key, cost, clock)
        elif op == "pop":
            pair.pop()
        elif op == "remove" and pair.live:
            pair.remove(sorted(pair.live)[n % len(pair.live)])
        elif op == "peek":
            # peek leaves no trace: the pops after it still match the reference
            peeked = pair.real.peek(n % 6 + 1)
            assert len(peeked) == min(n % 6 + 1, len(pair.live))
        elif op == "snapshot":
            state = pair.real.export_state()
            pair.real.import_state(state)
        assert len(pair.real) == len(pair.live)
    while pair.live:
        pair.pop()
    assert pair.pop() is None


@given(ops, st.lists(st.integers(1, 9), min_size=1, max_size=4))
def test_peek_is_the_next_pops(
    steps: list[tuple[str, int, str | None, int, int]], weights: list[int]
) -> None:
    pair = Pair(weights, {"c": 4}, checked=True)
    for op, priority, key, cost, n in steps:
        if op in ("add", "snapshot"):
            pair.add(priority % len(weights), key, cost)
        elif op == "pop":
            pair.pop()
        else:
            count = n % 8 + 1
            peeked = [m.id for m in pair.real.peek(count)]
            popped = [pair.pop() for _ in range(count)]
            assert peeked == [mid for mid in popped if mid is not None]


def lag(served: list[tuple[int, int]], weights: list[int]) -> float:
    """The largest gap, over every window of ``served`` ((flow, cost) in
    dispatch order), between a flow's cost and its weighted share of the window."""
    total_weight = sum(weights)
    prefix = [[0] * (len(served) + 1) for _ in weights]
    for i, (flow, cost) in enumerate(served):
        for f in range(len(weights)):
            prefix[f][i + 1] = prefix[f][i] + (cost if f == flow else 0)
    worst = 0.0
    for start in range(len(served)):
        for end in range(start + 1, len(served) + 1):
            got = [prefix[f][end] - prefix[f][start] for f in range(len(weights))]
            total = sum(got)
            for f, weight in enumerate(weights):
                worst = max(worst, abs(got[f] - weight * total / total_weight))
    return worst


def drain(pair: Pair, count: int) -> list[Message]:
    out = []
    for _ in range(count):
        mid = pair.pop()
        assert mid is not None
        out.append(pair.added[mid])
    return out


@given(
    st.lists(st.integers(1, 12), min_size=2, max_size=4),
    st.lists(st.integers(1, 4), min_size=1, max_size=30),
)
def test_band_lag_is_within_two_largest_costs(weights: list[int], costs: list[int]) -> None:
    pair = Pair(weights)
    dispatches = 100
    for i in range(dispatches):  # every band stays backlogged throughout
        for band in range(len(weights)):
            pair.add(band, None, costs[(i + band) % len(costs)])
    served = [(min(m.priority, len(weights) - 1), m.cost) for m in drain(pair, dispatches)]
    assert lag(served, weights) <= 2 * max(costs)


@given(
    st.lists(st.integers(1, 12), min_size=2, max_size=4),
    st.lists(st.integers(1, 4), min_size=1, max_size=30),
)
def test_key_lag_is_within_two_largest_costs(weights: list[int], costs: list[int]) -> None:
    keys = [f"k{i}" for i in range(len(weights))]
    pair = Pair([1], dict(zip(keys, weights, strict=True)))
    dispatches = 100
    for i in range(dispatches):
        for index, key in enumerate(keys):
            pair.add(0, key, costs[(i + index) % len(costs)])
    served = [(keys.index(m.fairness_key or ""), m.cost) for m in drain(pair, dispatches)]
    assert lag(served, weights) <= 2 * max(costs)


def test_shares_follow_weights_8_3_1() -> None:
    pair = Pair([1, 3, 8])
    for _ in range(2000):
        for band in range(3):
            pair.add(band, None)
    counts = Counter(m.priority for m in drain(pair, 1200))
    assert (counts[0], counts[1], counts[2]) == (100, 300, 800), counts


@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 300))
def test_an_idle_band_accrues_no_credit(weight_a: int, weight_b: int, alone: int) -> None:
    """Band 1 is served alone for a while; when band 0 arrives it gets its
    share from then on, not a burst making up for the time it was idle."""
    pair = Pair([weight_a, weight_b])
    for _ in range(alone + 200):
        pair.add(1, None)
    drain(pair, alone)
    for _ in range(200):
        pair.add(0, None)
    served = [(min(m.priority, 1), 1) for m in drain(pair, 150)]
    assert lag(served, [weight_a, weight_b]) <= 2


@given(
    st.lists(st.tuples(st.integers(0, 20), st.integers(0, 5_000)), min_size=2, max_size=60),
    st.integers(1, 1_000),
)
def test_aging_bound(arrivals: list[tuple[int, int]], interval: int) -> None:
    """A message never waits behind a later arrival unless that arrival's
    priority exceeds its own by more than (arrival gap) / interval."""
    pair = Pair([1], aging=interval)
    clock = 0
    for priority, gap in arrivals:
        clock += gap
        pair.add(priority, None, 1, clock)
    order = drain(pair, len(arrivals))
    for i, first in enumerate(order):
        for later in order[i + 1 :]:
            if later.seq < first.seq:  # ``first`` arrived after ``later`` and went ahead
                gap = first.created_at - later.created_at
                assert (first.priority - later.priority) * interval > gap


def low_priority_dispatches(pair: Pair, flood: int, step_ms: int) -> int:
    """One priority-1 message against a flood of priority-9 ones, one new
    arrival per dispatch, ``step_ms`` apart: how often the low one was served."""
    pair.add(1, None, 1, 0)
    low = 0
    for i in range(flood):
        pair.add(9, None, 1, (i + 1) * step_ms)
        mid = pair.pop()
        assert mid is not None
        low += pair.added[mid].priority == 1
    return low


def test_strict_priority_starves_a_low_message() -> None:
    served = low_priority_dispatches(Pair([1]), 1000, 10)
    assert served == 0, f"strict priority served the low message {served} times in 1000"


def test_weights_serve_a_low_band_within_its_share() -> None:
    pair = Pair([1, 1, 4])  # priority 1 is band 1 (weight 1 of 6); 9 is band 2
    pair.add(1, None)
    for i in range(100):
        pair.add(9, None)
        mid = pair.pop()
        if mid is not None and pair.added[mid].priority == 1:
            assert i < 6, f"weights 1:4 served the low band only at dispatch {i + 1}"
            return
    raise AssertionError("weights 1:4 never served the low band in 100 dispatches")


def test_aging_serves_a_low_message_once_it_has_waited_out_the_gap() -> None:
    # interval 100 ms: the 8-point gap is worth 800 ms of waiting; arrivals
    # come 10 ms apart, so the low message waits about 80 dispatches.
    pair = Pair([1], aging=100)
    pair.add(1, None, 1, 0)
    for i in range(1000):
        pair.add(9, None, 1, (i + 1) * 10)
        mid = pair.pop()
        assert mid is not None
        if pair.added[mid].priority == 1:
            assert 75 <= i <= 85, f"aging served the low message at dispatch {i + 1}"
            return
    raise AssertionError("aging never served the low message in 1000 dispatches")


@given(
    st.integers(1, 9),
    st.integers(1, 9),
    st.integers(2, 6),
    st.sampled_from([1, 1, 3]),
    st.booleans(),
)
def test_sole_mode_hands_over_exactly(
    weight_a: int, weight_b: int, alone: int, cost: int, by_key: bool
) -> None:
    """One flow served alone (the fast path), then a competitor arrives in
    another band or under another key: every choice still matches."""
    first: tuple[int, str | None]
    second: tuple[int, str | None]
    if by_key:
        pair = Pair([1], {"a": weight_a, "b": weight_b}, checked=True)
        first, second = (0, "a"), (0, "b")
    else:
        pair = Pair([weight_b, weight_a], checked=True)
        first, second = (1, None), (0, None)
    for _ in range(alone + 3):
        pair.add(*first)
    for _ in range(alone):
        pair.pop()
    for _ in range(4):
        pair.add(second[0], second[1], cost)
    while pair.live:
        pair.pop()
