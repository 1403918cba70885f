"""The node's collector tuning: small young generations, survivors of a full
collection frozen (every 16th full collection scans everything again), and
every collection's pause recorded by generation."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kokaq.server.gc_tuning import GcPauses

SCRIPT = """
import gc
from kokaq.server.gc_tuning import PAUSES, THRESHOLDS, tune_garbage_collection
tune_garbage_collection()
assert gc.get_threshold() == THRESHOLDS == (1_000, 20, 12_500)
assert gc.get_freeze_count() == 0
before = sum(PAUSES.counts[2])
gc.collect()
frozen = gc.get_freeze_count()
assert frozen > 0, frozen
counts = [frozen]
for _ in range(15):
    gc.collect()
    counts.append(gc.get_freeze_count())
assert counts[-1] == 0, counts  # the 16th unfroze everything
gc.collect()
assert gc.get_freeze_count() > 0
assert sum(PAUSES.counts[2]) - before == 17, PAUSES.counts[2]
assert PAUSES.sums[2] > 0
print("ok")
"""


def test_full_collections_freeze_their_survivors_and_every_pause_is_recorded() -> None:
    # A fresh interpreter: the tuning is process-wide.
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], check=False, capture_output=True, text=True
    )
    assert result.stdout.strip() == "ok", result.stderr


def test_pauses_land_in_the_bucket_of_their_length() -> None:
    ticks = iter([10.0, 10.0003, 20.0, 20.003, 30.0, 33.0])  # 0.3 ms, 3 ms, 3 s
    pauses = GcPauses(clock=lambda: next(ticks))
    for generation in (0, 0, 1):
        pauses.record("start", {"generation": generation})
        pauses.record("stop", {"generation": generation})
    young = dict(pauses.cumulative(0))
    assert young["0.0005"] == 1  # 0.3 ms
    assert young["0.0025"] == 1 and young["0.005"] == 2  # 3 ms
    assert young["+Inf"] == 2
    assert pauses.sums[0] == pytest.approx(0.0033)
    middle = dict(pauses.cumulative(1))
    assert middle["2.5"] == 0 and middle["+Inf"] == 1  # 3 s: past the largest bound
    assert dict(pauses.cumulative(2))["+Inf"] == 0
