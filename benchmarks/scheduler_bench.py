"""Weighted scheduling benchmark: dispatch cost of bands and fairness keys.

Three queues, each pre-filled with ``--depth`` (10^6) messages of 64 bytes,
priorities uniform over three values:

* ``strict``: one band (strict priority) -- the baseline;
* ``weighted_3bands``: three bands weighted 8:3:1, one per priority value;
* ``fair_10k_keys``: the same three bands, and 10,000 fairness keys spread
  uniformly over the messages.

Each of ``--rounds`` rounds times, back to back on the three queues,
``--dispatches`` dequeue+ack lifecycles through the batch calls (``dequeue``
with ``max_count=--batch``, then ``ack_batch``); ratios are taken within a
round (this machine is noisy) and the medians reported. ``max_share_error``
is the largest |achieved - configured| band share over the first 10^5
dispatches of the 8:3:1 queue. The last line printed is one JSON object.
Run: ``python benchmarks/scheduler_bench.py``.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import time

from kokaq.core import Band, Engine, MessageSpec, QueueConfig, SchedulingPolicy
from kokaq.core.validation import MAX_PRIORITY

NS = "bench"
PAYLOAD = bytes(64)
KEYS = 10_000
BANDS = (Band(0, 0, 1), Band(1, 1, 3), Band(2, MAX_PRIORITY, 8))
CONFIGS = {
    "strict": QueueConfig(),
    "weighted_3bands": QueueConfig(scheduling=SchedulingPolicy(bands=BANDS)),
    "fair_10k_keys": QueueConfig(scheduling=SchedulingPolicy(bands=BANDS)),
}


def fill(engine: Engine, queue: str, depth: int, keyed: bool, rng: random.Random) -> None:
    for first in range(0, depth, 1000):
        count = min(1000, depth - first)
        specs = [
            MessageSpec(
                payload=PAYLOAD,
                priority=rng.randrange(3),
                fairness_key=f"tenant{rng.randrange(KEYS)}" if keyed else None,
            )
            for _ in range(count)
        ]
        ids = [f"{queue}-{i}" for i in range(first, first + count)]
        engine.enqueue_batch(NS, queue, specs, message_ids=ids, now=1)


def lifecycles_per_s(engine: Engine, queue: str, total: int, batch: int, tag: str) -> float:
    gc.collect()
    start = time.perf_counter()
    for r in range(total // batch):
        leased = engine.dequeue(NS, queue, lock_id=f"{tag}{r}", now=2, max_count=batch)
        engine.ack_batch(NS, queue, [(m.id, m.lock_id or "") for m in leased], now=2)
    return total // batch * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dispatches", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    # The top band takes 8/12 of the dispatches and holds a third of the
    # messages: keep it (and so every band) backlogged to the end.
    if max(args.rounds * args.dispatches, 100_000) > args.depth // 2:
        parser.error("rounds x dispatches (and 10^5) must stay below depth/2")

    rng = random.Random(11)
    engine = Engine()
    engine.create_namespace(NS, now=0)
    started = time.perf_counter()
    for name, config in CONFIGS.items():
        engine.create_queue(NS, name, config, now=0)
        fill(engine, name, args.depth, name == "fair_10k_keys", rng)
    print(f"filled 3 queues of {args.depth:,} in {time.perf_counter() - started:.1f} s")

    rounds: list[dict[str, float]] = []
    for number in range(args.rounds):
        rates = {
            name: lifecycles_per_s(engine, name, args.dispatches, args.batch, f"L{number}-")
            for name in CONFIGS
        }
        rates["ratio_weighted"] = rates["weighted_3bands"] / rates["strict"]
        rates["ratio_fair"] = rates["fair_10k_keys"] / rates["strict"]
        rounds.append(rates)
        print(
            f"round {number + 1}: dequeue+ack per s: strict {rates['strict']:,.0f}, "
            f"3 bands {rates['weighted_3bands']:,.0f}, "
            f"3 bands x 10k keys {rates['fair_10k_keys']:,.0f}"
        )

    # Share error over the first 10^5 dispatches of the weighted queue: the
    # rounds above dispatched rounds x dispatches of them; top up to 10^5.
    done = args.rounds * args.dispatches
    if done < 100_000:
        lifecycles_per_s(engine, "weighted_3bands", 100_000 - done, args.batch, "share-")
    shares = engine.scheduling_stats(NS, "weighted_3bands").bands
    dispatched = sum(band.dispatched for band in shares)
    share_error = max(abs(band.achieved_share - band.configured_share) for band in shares)
    print(
        f"band shares after {dispatched:,} dispatches (configured 8:3:1): "
        + ", ".join(f"{band.achieved_share:.4f}/{band.configured_share:.4f}" for band in shares)
    )

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    print(
        json.dumps(
            {
                "strict_per_s": round(median("strict")),
                "weighted_3bands_per_s": round(median("weighted_3bands")),
                "fair_10k_keys_per_s": round(median("fair_10k_keys")),
                "ratio_weighted_to_strict": round(median("ratio_weighted"), 3),
                "ratio_fair_to_strict": round(median("ratio_fair"), 3),
                "max_share_error": round(share_error, 5),
                "share_dispatches": dispatched,
                "rounds": args.rounds,
            }
        )
    )


if __name__ == "__main__":
    main()
