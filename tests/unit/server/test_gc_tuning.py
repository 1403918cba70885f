"""The node's collector tuning: survivors of a full collection are frozen,
and every 16th full collection scans everything again."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import gc
from kokaq.server.node import tune_garbage_collection
tune_garbage_collection()
assert gc.get_threshold() == (50_000, 50, 100)
assert gc.get_freeze_count() == 0
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
print("ok")
"""


def test_full_collections_freeze_their_survivors() -> None:
    # A fresh interpreter: the tuning is process-wide.
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], check=False, capture_output=True, text=True
    )
    assert result.stdout.strip() == "ok", result.stderr
