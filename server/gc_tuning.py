"""The node's use of CPython's cyclic garbage collector, and its pauses.

A collection stops every thread of the node, so its length lands in the
latency of whatever waits meanwhile: a write's Raft commit, a job's lease.
What a collection costs is proportional to the objects it scans:

* a young collection (generation 0) scans the objects allocated since the
  last one that are still alive. A node keeps much of what it allocates (the
  messages, the succeeded ones it retains), so nearly all of them are, and
  each costs about half a microsecond;
* a middle one (generation 1) scans the survivors of ``threshold1`` young ones;
* a full one (generation 2) scans everything not frozen.

So thresholds set pause lengths more than total work: collecting young
objects every 1,000 allocations instead of every 50,000 made the longest
pause of a node under jobs_bench's paced load 3 ms instead of 33 ms (and its
Raft commits' longest 21 ms instead of 49), for about twice the collector
time in all (2 % of a core). Full collections stay as rare as they were (one
per ~250 million allocations, and only once the long-lived objects grew by a
quarter, as CPython's own rule has it); their survivors are frozen, so the
next one scans only what is new. Garbage cycles among frozen objects wait for
every 16th full collection, which scans everything again.

``PAUSES`` records every collection's length by generation, for the
``kokaq_gc_pause_seconds`` histogram.
"""

from __future__ import annotations

import gc
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

__all__ = ["PAUSES", "THRESHOLDS", "GcPauses", "tune_garbage_collection"]

#: Young every 1,000 net allocations, middle every 20 young, full every
#: 12,500 middle (20,000 x 12,500 = the 250 million of 50,000 x 50 x 100).
THRESHOLDS = (1_000, 20, 12_500)


class GcPauses:
    """How long each collection took, by generation, as histogram counts.

    Fed by ``gc.callbacks``, which run in whatever thread allocated. They
    take no lock (the thread could be holding it already) and only update
    lists under the GIL; collections never overlap, so a start pairs with
    the next stop."""

    BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._started = 0.0
        # Per generation: a count per bucket, the last one past the largest bound.
        self.counts = [[0] * (len(self.BUCKETS) + 1) for _ in range(3)]
        self.sums = [0.0, 0.0, 0.0]

    def record(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self._clock()
            return
        seconds = self._clock() - self._started
        generation = info["generation"]
        self.counts[generation][bisect_left(self.BUCKETS, seconds)] += 1
        self.sums[generation] += seconds

    def cumulative(self, generation: int) -> list[tuple[str, int]]:
        """Prometheus buckets: (upper bound, count at or below it), ending at +Inf."""
        bounds = [str(bound) for bound in self.BUCKETS] + ["+Inf"]
        rows, total = [], 0
        for bound, count in zip(bounds, self.counts[generation], strict=True):
            total += count
            rows.append((bound, total))
        return rows


PAUSES = GcPauses()


def tune_garbage_collection() -> None:
    """Set the thresholds, freeze the survivors of full collections and
    record every pause (process-wide: call it once, as the node starts)."""
    gc.set_threshold(*THRESHOLDS)
    full_collections = 0

    def freeze_after_full_collection(phase: str, info: dict[str, Any]) -> None:
        nonlocal full_collections
        if phase == "stop" and info["generation"] == 2:
            full_collections += 1
            if full_collections % 16:
                gc.freeze()
            else:
                gc.unfreeze()

    gc.callbacks.append(PAUSES.record)
    gc.callbacks.append(freeze_after_full_collection)
