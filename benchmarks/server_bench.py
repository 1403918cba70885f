"""Node benchmark: a real durable node against a bare gRPC echo server.

Measures in one run (this machine is noisy, so the ceiling is measured here too):

(a) an echo server (grpc.aio, its own process) answering EnqueueBatch, Dequeue
    and AckBatch with responses of the node's shapes and sizes, without any
    engine, log or disk -- the transport ceiling for the same client code;
(b) produce: ``Producer`` (batches of ``--batch``) from 1 and 4 client processes;
(c) consume+ack: dequeue batches of 100 and ``AckBatch`` them, 1 and 4 processes;
(d) latency: p50/p99 of a single enqueue and of a single dequeue+ack, while
    another process produces at half the best produce rate.

Throughputs are best of 1 and 4 processes; the echo figures are measured with
the same clients, so ``produce_ratio_to_echo`` / ``consume_ratio_to_echo``
compare like with like. The node runs durably (fdatasync per Raft entry).
The last line printed is one JSON object.
Run from the repository root: ``python -m benchmarks.server_bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import grpc

from kokaq.client import Client, Producer
from kokaq.protocol.v1 import kokaq_pb2 as pb
from tests.integration.nodes import start_node

PAYLOAD = bytes(100)
NS = "bench"
CONSUME_BATCH = 100


# -- the echo server -------------------------------------------------------------------


def _echo_message(index: int) -> pb.Message:
    now = 1_790_000_000_000
    return pb.Message(
        id=f"{index:024x}",
        namespace=NS,
        queue="q",
        state=pb.MESSAGE_STATE_LEASED,
        payload=PAYLOAD,
        priority=index % 10,
        headers=pb.Headers(),
        created_at=now,
        updated_at=now,
        visible_at=now + 30_000,
        deliveries=1,
        dedup_key=f"sdk-{index:032x}",
        lock_id=f"{index + 1:024x}",
        lock_deadline=now + 30_000,
    )


async def _serve_echo() -> None:
    messages = [_echo_message(i) for i in range(1000)]

    def enqueue_batch(request: bytes, _: Any) -> pb.EnqueueBatchResponse:
        parsed = pb.EnqueueBatchRequest.FromString(request)
        results = [
            pb.EnqueueResult(message_id=f"{i:024x}", state=pb.MESSAGE_STATE_READY)
            for i in range(len(parsed.messages))
        ]
        return pb.EnqueueBatchResponse(results=results)

    def dequeue(request: bytes, _: Any) -> pb.DequeueResponse:
        parsed = pb.DequeueRequest.FromString(request)
        return pb.DequeueResponse(messages=messages[: parsed.max_count or 1])

    def ack_batch(request: bytes, _: Any) -> pb.AckBatchResponse:
        parsed = pb.AckBatchRequest.FromString(request)
        return pb.AckBatchResponse(results=[pb.ErrorDetail() for _ in parsed.items])

    handlers = {
        "EnqueueBatch": enqueue_batch,
        "Dequeue": dequeue,
        "AckBatch": ack_batch,
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "kokaq.v1.DataPlane",
                {
                    name: grpc.unary_unary_rpc_method_handler(
                        handler, response_serializer=lambda m: m.SerializeToString()
                    )
                    for name, handler in handlers.items()
                },
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"echo ready: 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


def start_echo() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.server_bench", "--echo-server"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("echo ready: "):
        process.kill()
        raise RuntimeError(f"echo server did not start: {line!r}")
    return process, line.split()[-1]


# -- client processes -------------------------------------------------------------------


def produce(address: str, queue: str, count: int, batch: int) -> tuple[float, float]:
    with Client(address) as client:
        started = time.monotonic()
        with Producer(client, NS, queue, batch_size=batch) as producer:
            for _ in range(count):
                producer.send(PAYLOAD)
        return started, time.monotonic()


def consume(address: str, queue: str, count: int) -> tuple[float, float]:
    with Client(address) as client:
        q = client.queue(NS, queue)
        started, done = time.monotonic(), 0
        while done < count:
            leased = q.dequeue(min(CONSUME_BATCH, count - done))
            if not leased:
                break
            q.ack_many(leased)
            done += len(leased)
        if done < count:
            raise RuntimeError(f"consumed {done} of {count}")
        return started, time.monotonic()


def produce_at(address: str, queue: str, rate: float, seconds: float) -> int:
    """Produce at ``rate`` messages per second for ``seconds``, in 10 ms steps."""
    with Client(address) as client:
        with Producer(client, NS, queue, linger_ms=2) as producer:
            started, sent = time.monotonic(), 0
            while (elapsed := time.monotonic() - started) < seconds:
                due = int(rate * elapsed)
                for _ in range(due - sent):
                    producer.send(PAYLOAD)
                sent = max(sent, due)
                time.sleep(0.01)
        return sent


def in_processes(processes: int, work: Callable[..., Any], *args: Any) -> list[Any]:
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        return pool.starmap(work, [args] * processes)


def rate(total: int, spans: list[tuple[float, float]]) -> float:
    return total / (max(end for _, end in spans) - min(start for start, _ in spans))


# -- the measurements ----------------------------------------------------------------------


def setup_queues(address: str, names: list[str]) -> None:
    with Client(address) as client:
        client.create_namespace(NS)
        for name in names:
            client.create_queue(NS, name)


def throughputs(address: str, count: int, batch: int, tag: str) -> dict[str, float]:
    """Best produce and consume rates over 1 and 4 processes (each run its own queue)."""
    found: dict[str, float] = {}
    for processes in (1, 4):
        queue = f"q{processes}"
        share = count // processes
        spans = in_processes(processes, produce, address, queue, share, batch)
        produced = rate(share * processes, spans)
        spans = in_processes(processes, consume, address, queue, share)
        consumed = rate(share * processes, spans)
        print(f"{tag}: {processes} process(es): produce {produced:,.0f} msg/s, "
              f"consume+ack {consumed:,.0f} msg/s", flush=True)  # fmt: skip
        found["produce"] = max(found.get("produce", 0.0), produced)
        found["consume"] = max(found.get("consume", 0.0), consumed)
    return found


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def latencies(address: str, load_rate: float, probes: int) -> dict[str, float]:
    """Single enqueue and single dequeue+ack, under half the best produce rate."""
    with Client(address) as client:
        probe = client.queue(NS, "probe")
        for first in range(0, probes, 1000):  # a batch holds at most 1,000
            probe.enqueue_many([PAYLOAD] * min(1000, probes - first))
        context = multiprocessing.get_context("spawn")
        with context.Pool(1) as pool:
            seconds = 2.0 + probes * 0.02  # outlasts the probes
            load = pool.apply_async(produce_at, (address, "load", load_rate, seconds))
            time.sleep(1.0)  # let the load settle
            enqueue_ms, dequeue_ack_ms = [], []
            for _ in range(probes):
                started = time.perf_counter()
                probe.enqueue(PAYLOAD)
                enqueue_ms.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                (leased,) = probe.dequeue(1)
                leased.ack()
                dequeue_ack_ms.append((time.perf_counter() - started) * 1000)
            load.get()
    return {
        "p50_enqueue_ms": statistics.median(enqueue_ms),
        "p99_enqueue_ms": percentile(enqueue_ms, 0.99),
        "p50_dequeue_ack_ms": statistics.median(dequeue_ack_ms),
        "p99_dequeue_ack_ms": percentile(dequeue_ack_ms, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=60_000, help="per throughput run")
    parser.add_argument("--batch", type=int, default=500, help="Producer batch size")
    # 2,000: the p99 of 400 samples is their 5th worst, which one stall moves by 10 ms.
    parser.add_argument("--probes", type=int, default=2000, help="latency samples")
    parser.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_server:
        asyncio.run(_serve_echo())
        return

    echo_process, echo_address = start_echo()
    try:
        echo = throughputs(echo_address, args.messages, args.batch, "echo")
    finally:
        echo_process.kill()
        echo_process.wait()

    with tempfile.TemporaryDirectory() as data_dir:
        node = start_node(data_dir)
        try:
            setup_queues(node.grpc, ["q1", "q4", "probe", "load"])
            found = throughputs(node.grpc, args.messages, args.batch, "node")
            latency = latencies(node.grpc, found["produce"] / 2, args.probes)
        finally:
            node.kill()
    print(
        f"latency at {found['produce'] / 2:,.0f} msg/s of load: enqueue p50 "
        f"{latency['p50_enqueue_ms']:.2f} ms p99 {latency['p99_enqueue_ms']:.2f} ms; "
        f"dequeue+ack p50 {latency['p50_dequeue_ack_ms']:.2f} ms "
        f"p99 {latency['p99_dequeue_ack_ms']:.2f} ms"
    )
    print(
        json.dumps(
            {
                "echo_msgs_per_s": round(echo["produce"]),
                "echo_consume_msgs_per_s": round(echo["consume"]),
                "produce_msgs_per_s": round(found["produce"]),
                "consume_msgs_per_s": round(found["consume"]),
                "produce_ratio_to_echo": round(found["produce"] / echo["produce"], 3),
                "consume_ratio_to_echo": round(found["consume"] / echo["consume"], 3),
                "p99_enqueue_ms": round(latency["p99_enqueue_ms"], 2),
                "p99_dequeue_ack_ms": round(latency["p99_dequeue_ack_ms"], 2),
                "p50_enqueue_ms": round(latency["p50_enqueue_ms"], 2),
                "p50_dequeue_ack_ms": round(latency["p50_dequeue_ack_ms"], 2),
                "batch": args.batch,
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
