"""The ordered indexes against sorted lists, under random adds, removals and pops."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kokaq.core.config import SchedulingPolicy
from kokaq.core.indexes import LazyHeap, OldestIndex
from kokaq.core.message import Message, MessageState
from kokaq.core.scheduler import SeqQueue
from kokaq.core.weighted import WeightedScheduler


def message(seq: int, priority: int = 0) -> Message:
    return Message(f"m{seq}", b"", priority, seq, 0, 0, None)


# An op: ("add", n) adds a fresh message (or re-adds an old one when n is odd and
# one has left), ("remove", n) removes a live one, ("pop", _) takes the head.
ops = st.lists(
    st.tuples(st.sampled_from(["add", "add", "remove", "pop"]), st.integers(0, 1_000)),
    max_size=300,
)


@given(ops)
def test_seq_queue_orders_by_seq(steps: list[tuple[str, int]]) -> None:
    queue = SeqQueue()
    live: dict[int, Message] = {}
    gone: list[Message] = []
    next_seq = 0
    for op, n in steps:
        if op == "add":
            if n % 2 and gone:
                m = gone.pop(n % len(gone))  # a message coming back: an old seq
            else:
                next_seq += 1
                m = message(next_seq)
            queue.add(m)
            live[m.seq] = m
        elif op == "remove" and live:
            m = live.pop(sorted(live)[n % len(live)])
            queue.forget(m)
            gone.append(m)
        elif op == "pop" and live:
            assert queue.pop() is live.pop(min(live))
        assert queue.live == len(live)
        if live:
            assert queue.head().seq == min(live)
        assert len(queue.fifo) + len(queue.late) <= 2 * len(live) + 33
    assert sorted(m.seq for m in queue.messages()) == sorted(live)


@given(ops, st.integers(1, 5))
def test_one_band_orders_by_priority_then_seq(
    steps: list[tuple[str, int]], priorities: int
) -> None:
    scheduler = WeightedScheduler(SchedulingPolicy())
    live: dict[int, Message] = {}
    next_seq = 0

    def order() -> list[int]:
        return [m.seq for m in sorted(live.values(), key=lambda m: (-m.priority, m.seq))]

    for op, n in steps:
        if op == "add":
            next_seq += 1
            m = message(next_seq, n % priorities)
            scheduler.add(m)
            live[m.seq] = m
        elif op == "remove" and live:
            scheduler.remove(live.pop(sorted(live)[n % len(live)]))
        elif op == "pop":
            expected = order()[:1]
            got = scheduler.pop()
            assert ([got.seq] if got else []) == expected
            if got:
                del live[got.seq]
        assert len(scheduler) == len(live)
        assert [m.seq for m in scheduler.peek(4)] == order()[:4]
    assert sorted(m.seq for m in scheduler.clear()) == sorted(live)
    assert len(scheduler) == 0 and scheduler.pop() is None


@given(ops)
def test_lazy_heap_pops_in_key_order(steps: list[tuple[str, int]]) -> None:
    heap = LazyHeap("entry")
    live: dict[int, Message] = {}
    for seq, (op, n) in enumerate(steps):
        if op == "add":
            m = message(seq)
            heap.push((n << 64) | seq, m)
            live[(n << 64) | seq] = m
        elif op == "remove" and live:
            heap.discard(live.pop(sorted(live)[n % len(live)]))
        elif op == "pop":
            limit = n << 64
            due = [k for k in live if k < limit]
            got = heap.pop_below(limit)
            assert (got is None) == (not due)
            if got is not None:
                assert got is live.pop(min(due))
        assert len(heap) == len(live)
        assert heap.min_key() == (min(live) if live else None)
    assert {id(m) for m in heap.clear()} == {id(m) for m in live.values()}


def test_oldest_index_follows_state_changes() -> None:
    index = OldestIndex(MessageState.READY)
    messages = [message(seq) for seq in range(1, 3000)]
    for m in messages:
        index.add(m)
    for m in messages[:-1]:  # all but the newest leave, then the first comes back
        m.state = MessageState.LEASED
    index.removed_many(len(messages) - 1)
    assert index.oldest() is messages[-1]
    messages[0].state = MessageState.READY
    index.add(messages[0])
    assert index.oldest() is messages[0]
    index.clear()
    assert index.oldest() is None
