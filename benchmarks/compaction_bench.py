"""Compaction benchmark: what a snapshot of a deep queue costs the writes around it.

A durable node holds ``--depth`` messages (128 bytes each). One client then
enqueues single messages back to back for ``--seconds``, at 3,000 journal
entries per compaction, so several snapshots of the whole engine are taken
meanwhile. The same is done against a node that never compacts within the
run (the baseline, measured in the same run: this machine is noisy). The
figures are the p50, p99 and the worst single-enqueue latency of each, and
how many snapshots the compacting node installed (the dump file's
replacements, as the client saw them).

The last line printed is one JSON object. Run from the repository root:
``python -m benchmarks.compaction_bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

from kokaq.client import Client
from tests.integration.nodes import start_node

NS, QUEUE = "bench", "q"
PAYLOAD = bytes(128)


def run(depth: int, seconds: float, compaction_entries: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as data_dir:
        node = start_node(data_dir, ["--compaction-entries", str(compaction_entries)])
        try:
            with Client(node.grpc) as client:
                client.create_namespace(NS)
                client.create_queue(NS, QUEUE)
                queue = client.queue(NS, QUEUE)
                for first in range(0, depth, 1000):
                    queue.enqueue_many([PAYLOAD] * min(1000, depth - first))
                dump = os.path.join(data_dir, "raft.dump")
                dumps, last_seen = 0, _inode(dump)
                samples: list[float] = []
                ends = time.monotonic() + seconds
                while time.monotonic() < ends:
                    started = time.perf_counter()
                    queue.enqueue(PAYLOAD)
                    samples.append((time.perf_counter() - started) * 1000)
                    if (seen := _inode(dump)) != last_seen:
                        dumps, last_seen = dumps + 1, seen
        finally:
            node.kill()
    samples.sort()
    return {
        "p50_ms": statistics.median(samples),
        "p99_ms": samples[int(0.99 * (len(samples) - 1))],
        "max_ms": samples[-1],
        "snapshots": dumps,
        "enqueues": len(samples),
    }


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=300_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--compaction-entries", type=int, default=3_000)
    args = parser.parse_args()
    compacting = run(args.depth, args.seconds, args.compaction_entries)
    baseline = run(args.depth, args.seconds, 10_000_000)
    for name, figures in (("compacting", compacting), ("never compacting", baseline)):
        print(f"{name}: " + ", ".join(f"{k} {v:,.2f}" for k, v in figures.items()), flush=True)
    print(
        json.dumps(
            {
                "depth": args.depth,
                "snapshots": compacting["snapshots"],
                "p99_enqueue_ms_compacting": round(compacting["p99_ms"], 2),
                "max_enqueue_ms_compacting": round(compacting["max_ms"], 2),
                "p99_enqueue_ms_baseline": round(baseline["p99_ms"], 2),
                "max_enqueue_ms_baseline": round(baseline["max_ms"], 2),
                "max_ratio_to_baseline": round(compacting["max_ms"] / baseline["max_ms"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
