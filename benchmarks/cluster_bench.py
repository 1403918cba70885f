"""Cluster benchmark: a single node against a 3-node cluster on this machine.

Measures in one run:

(a) produce (``Producer``) and consume+ack (dequeue 100, ``AckBatch``)
    throughput against a single durable node and against a 3-node cluster,
    best of 1 and 4 client processes, exactly as ``server_bench`` does;
(b) failover: SIGKILL the leader, and time until a write succeeds on the new
    leader (the client retrying over the survivors); the killed member is then
    restarted and the next trial waits for three healthy members. Median of
    ``--trials``;
(c) paused-leader failover: SIGSTOP the leader under a client that talks to
    it, and time until its write succeeds on another member (then SIGCONT).

The three replicas share this machine's cores with the clients, so the cluster
figures are the pessimistic case. The last line printed is one JSON object.
Run from the repository root: ``python -m benchmarks.cluster_bench``.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import tempfile
import time

from benchmarks.server_bench import setup_queues, throughputs
from kokaq.client import Client, RetryPolicy
from tests.integration.nodes import NodeProcess, leader_of, start_cluster, start_node


def failover_seconds(nodes: list[NodeProcess]) -> float:
    old = leader_of(nodes)
    survivors = [n.grpc for n in nodes if n is not old]
    with Client(survivors, retry=RetryPolicy(timeout=30, first_delay=0.01, max_delay=0.05)) as c:
        q = c.queue("bench", "failover")
        q.enqueue(b"warm")
        old.kill()
        killed = time.monotonic()
        q.enqueue(b"after")  # retried until a new leader takes it
        took = time.monotonic() - killed
    old.start()
    leader_of(nodes)
    return took


def paused_failover_seconds(nodes: list[NodeProcess]) -> float:
    """SIGSTOP the leader (it stays connected but silent: a partition as a
    client sees it) with the client talking to it; time until a write succeeds
    elsewhere. Keepalive pings are what notice the silence."""
    old = leader_of(nodes)
    assert old.process is not None
    addresses = [old.grpc, *(n.grpc for n in nodes if n is not old)]  # start on the leader
    with Client(addresses, retry=RetryPolicy(timeout=60, first_delay=0.01, max_delay=0.05)) as c:
        q = c.queue("bench", "failover")
        q.enqueue(b"warm")
        old.process.send_signal(signal.SIGSTOP)
        paused = time.monotonic()
        try:
            q.enqueue(b"after")
            took = time.monotonic() - paused
        finally:
            old.process.send_signal(signal.SIGCONT)
    leader_of(nodes)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=40_000, help="per throughput run")
    parser.add_argument("--batch", type=int, default=500, help="Producer batch size")
    parser.add_argument("--trials", type=int, default=5, help="failover trials")
    args = parser.parse_args()
    queues = ["q1", "q4", "failover"]

    with tempfile.TemporaryDirectory() as data_dir:
        node = start_node(data_dir)
        try:
            setup_queues(node.grpc, queues)
            single = throughputs(node.grpc, args.messages, args.batch, "single node")
        finally:
            node.kill()

    with tempfile.TemporaryDirectory() as data_dir:
        nodes = start_cluster(data_dir)
        try:
            addresses = ",".join(n.grpc for n in nodes)
            setup_queues(addresses, queues)
            cluster = throughputs(addresses, args.messages, args.batch, "3-node cluster")
            failovers, paused = [], []
            for trial in range(args.trials):
                failovers.append(failover_seconds(nodes))
                print(f"failover {trial + 1}: {failovers[-1]:.2f} s", flush=True)
            for trial in range(args.trials):
                paused.append(paused_failover_seconds(nodes))
                print(f"paused-leader failover {trial + 1}: {paused[-1]:.2f} s", flush=True)
        finally:
            for n in nodes:
                n.kill()

    print(
        json.dumps(
            {
                "single_produce_per_s": round(single["produce"]),
                "single_consume_per_s": round(single["consume"]),
                "cluster_produce_per_s": round(cluster["produce"]),
                "cluster_consume_per_s": round(cluster["consume"]),
                "cluster_to_single_ratio": round(cluster["consume"] / single["consume"], 3),
                "failover_s_median": round(statistics.median(failovers), 2),
                "failover_s": [round(f, 2) for f in failovers],
                "paused_failover_s_median": round(statistics.median(paused), 2),
                "paused_failover_s": [round(f, 2) for f in paused],
            }
        )
    )


if __name__ == "__main__":
    main()
