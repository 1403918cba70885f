"""Engine core benchmark: full message lifecycles against raw heapq, and memory.

Measures in one run (this machine is noisy, so the baseline is measured here too):

(a) ``heapq_pairs_per_s``: heappush + heappop pairs on ``(priority, seq)``
    tuples in a heap of 10^4, priorities uniform in 0-9 -- the Python floor;
(b) ``lifecycle_per_s_1e4`` / ``_1e6``: enqueue -> dequeue -> ack of a 128-byte
    payload, priorities uniform in 0-9, in a queue kept at a depth of 10^4 and
    10^6 messages. Messages go through the engine's batch calls
    (``enqueue_batch``, ``dequeue(max_count)``, ``ack_batch``) of ``--batch``
    messages, the way the server's group commit hands them over;
    ``single_op_lifecycle_per_s_1e4`` is the same with one call per step;
(c) ``bytes_per_message``: traced memory per queued message at depth 10^6,
    beyond its payload object (ids and every index included).

The run is split into ``--rounds`` rounds; each round times the heapq baseline
and both depths back to back, and ``ratio_to_heapq`` / ``depth_retention`` are
the medians of the per-round ratios (so machine noise that slows one round
slows its baseline too). The last line printed is one JSON object.
Run: ``python benchmarks/core_bench.py``.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import json
import random
import statistics
import sys
import time
import tracemalloc

from kokaq.core import Engine, MessageSpec

PAYLOAD = bytes(128)
NS, Q = "bench", "q"


def heapq_pairs_per_s(depth: int, pairs: int, priorities: list[int]) -> float:
    mask = len(priorities) - 1
    heap = [(priorities[i & mask], i) for i in range(depth)]
    heapq.heapify(heap)
    push, pop = heapq.heappush, heapq.heappop
    seq = depth
    start = time.perf_counter()
    for i in range(pairs):
        seq += 1
        push(heap, (priorities[i & mask], seq))
        pop(heap)
    return pairs / (time.perf_counter() - start)


class Filled:
    """An engine holding one queue at a given depth, and a stream of fresh ids."""

    def __init__(self, depth: int, priorities: list[int]) -> None:
        self.engine = Engine()
        self.engine.create_namespace(NS, now=0)
        self.engine.create_queue(NS, Q, now=0)
        self.priorities = priorities
        self.specs = [MessageSpec(payload=PAYLOAD, priority=p) for p in range(10)]
        self.counter = 0
        self.now = 1
        self.phase_us: list[float] = []  # enqueue, dequeue, ack: microseconds per message
        self.fill(depth)

    def ids(self, count: int) -> list[str]:
        start = self.counter
        self.counter += count
        return [f"m{i:012d}" for i in range(start, start + count)]

    def fill(self, count: int, chunk: int = 1000) -> None:
        mask = len(self.priorities) - 1
        while count > 0:
            n = min(chunk, count)
            first = self.counter
            specs = [self.specs[self.priorities[(first + i) & mask]] for i in range(n)]
            self.engine.enqueue_batch(NS, Q, specs, message_ids=self.ids(n), now=self.now)
            count -= n

    def batched_lifecycles(self, total: int, batch: int) -> float:
        engine = self.engine
        mask = len(self.priorities) - 1
        rounds = total // batch
        # Inputs are prepared before the clock starts, as a server decodes them first.
        id_batches = [self.ids(batch) for _ in range(rounds)]
        spec_batches = [
            [self.specs[self.priorities[(r * batch + i) & mask]] for i in range(batch)]
            for r in range(rounds)
        ]
        clock = time.perf_counter
        phases = [0.0, 0.0, 0.0]
        gc.collect()
        start = clock()
        for r in range(rounds):
            self.now += 1
            now = self.now
            t0 = clock()
            engine.enqueue_batch(NS, Q, spec_batches[r], message_ids=id_batches[r], now=now)
            t1 = clock()
            leased = engine.dequeue(NS, Q, lock_id=f"L{r}", now=now, max_count=batch)
            t2 = clock()
            engine.ack_batch(NS, Q, [(m.id, m.lock_id or "") for m in leased], now=now)
            t3 = clock()
            phases[0] += t1 - t0
            phases[1] += t2 - t1
            phases[2] += t3 - t2
        elapsed = clock() - start
        self.phase_us = [round(p / (rounds * batch) * 1e6, 2) for p in phases]
        return rounds * batch / elapsed

    def single_lifecycles(self, total: int) -> float:
        engine = self.engine
        mask = len(self.priorities) - 1
        ids = self.ids(total)
        priorities = [self.priorities[i & mask] for i in range(total)]
        enqueue, dequeue, ack = engine.enqueue, engine.dequeue, engine.ack
        now = self.now = self.now + 1
        gc.collect()
        start = time.perf_counter()
        for i in range(total):
            enqueue(NS, Q, PAYLOAD, message_id=ids[i], now=now, priority=priorities[i])
            (message,) = dequeue(NS, Q, lock_id="L", now=now)
            ack(NS, Q, message.id, "L", now=now)
        return total / (time.perf_counter() - start)


def bytes_per_message(depth: int, priorities: list[int]) -> float:
    """Traced bytes per queued message, less its payload object."""
    engine = Engine()
    engine.create_namespace(NS, now=0)
    engine.create_queue(NS, Q, now=0)
    mask = len(priorities) - 1
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    chunk = 1000
    payload_bytes = 0
    for first in range(0, depth, chunk):
        # Each message gets its own payload and id objects, as if decoded off the wire.
        specs = []
        for i in range(first, first + chunk):
            payload = bytes(PAYLOAD)[:-1] + bytes([i & 0xFF])
            payload_bytes += sys.getsizeof(payload)
            specs.append(MessageSpec(payload=payload, priority=priorities[i & mask]))
        ids = [f"m{i:012d}" for i in range(first, first + chunk)]
        engine.enqueue_batch(NS, Q, specs, message_ids=ids, now=1)
        del specs, ids
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert engine.stats(NS, Q).ready == depth
    return (after - before - payload_bytes) / depth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--lifecycles", type=int, default=40_000)
    parser.add_argument("--big-depth", type=int, default=1_000_000)
    args = parser.parse_args()

    rng = random.Random(7)
    priorities = [rng.randrange(10) for _ in range(1 << 16)]

    per_message = bytes_per_message(args.big_depth, priorities)
    print(f"bytes per queued message at depth {args.big_depth:.0e}: {per_message:,.0f}")

    small = Filled(10_000, priorities)
    big = Filled(args.big_depth, priorities)
    # The machine is noisy, so each round measures the baseline and both depths
    # back to back, and the ratios are taken within a round.
    rounds: list[dict[str, float]] = []
    for number in range(args.rounds):
        heapq_rate = heapq_pairs_per_s(10_000, 200_000, priorities)
        rate_small = small.batched_lifecycles(args.lifecycles, args.batch)
        rate_big = big.batched_lifecycles(args.lifecycles, args.batch)
        single = small.single_lifecycles(args.lifecycles // 4)
        rounds.append(
            {
                "heapq": heapq_rate,
                "small": rate_small,
                "big": rate_big,
                "single": single,
                "ratio": rate_small / heapq_rate,
                "retention": rate_big / rate_small,
            }
        )
        print(
            f"round {number + 1}: heapq pairs/s {heapq_rate:,.0f}; lifecycles/s "
            f"depth 1e4 {rate_small:,.0f}, depth {args.big_depth:.0e} {rate_big:,.0f}, "
            f"one call per step {single:,.0f}; µs per message at 1e4 "
            f"(enqueue, dequeue, ack): {small.phase_us}"
        )

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    print(
        json.dumps(
            {
                "heapq_pairs_per_s": round(median("heapq")),
                "lifecycle_per_s_1e4": round(median("small")),
                "lifecycle_per_s_1e6": round(median("big")),
                "ratio_to_heapq": round(median("ratio"), 3),
                "depth_retention": round(median("retention"), 3),
                "bytes_per_message": round(per_message),
                "single_op_lifecycle_per_s_1e4": round(median("single")),
                "batch": args.batch,
            }
        )
    )


if __name__ == "__main__":
    main()
