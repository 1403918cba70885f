"""Job-queue benchmark: a real durable node, jobs submitted over REST and
gRPC, and ``kokaq worker`` processes running a no-op handler.

Measures in one run (this machine is noisy, so the baselines are measured here too):

(a) baselines: ``GET /healthz`` over HTTP (the REST ceiling of this machine)
    and the gRPC producer's enqueue rate without workers;
(b) ``rest_submit_per_s``: ``POST /v1/jobs`` from 16 concurrent connections,
    and ``rest_batch_submit_per_s``: ``POST /v1/jobs/batch`` of 500;
(c) ``grpc_submit_per_s``: ``Producer`` (batched enqueues) from one process;
(d) ``worker_jobs_per_s``: end to end, from the first submit to the last job
    acked, with ``--workers`` worker processes (concurrency 64 each) while
    jobs are produced over gRPC as fast as they go; with the CPU the node and
    the workers spent per job then (``*_cpu_us_per_job``, from /proc: less
    noisy than rates on a shared machine), and the Raft entries, Dequeues and
    AckBatches the node proposed per 1,000 jobs;
(e) ``p99_submit_to_start_ms``: jobs submitted at half the rate of (d), each
    carrying its submit time; the handlers record when they start. The wait
    is split in three (p50s and p99s): submit -> enqueue proposed (the job's
    ``created_at``), -> Dequeue proposed (its lease start, ``lock_deadline``
    less the visibility timeout), -> handler start. With what the node did
    meanwhile: CPU per job (node, workers), Raft entries, Dequeues and
    AckBatches per 1,000 jobs (smaller batches than in (d): each costs gRPC
    calls and wake-ups, which dominate at this rate), and its garbage
    collections: how many per second, and how many took over 10 ms.

Each figure is the median of ``--runs`` runs. The last line printed is one
JSON object. Run from the repository root: ``python -m benchmarks.jobs_bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from kokaq.client import Client, Producer
from kokaq.core import Headers, QueueConfig
from tests.integration.nodes import NodeProcess, start_node
from tests.integration.scrape import scrape

HANDLERS = """
    import atexit, json, os, time
    from kokaq.client import Worker
    from kokaq.core import QueueConfig

    worker = Worker()
    LATENCIES = []
    VISIBILITY_MS = QueueConfig().visibility_timeout_ms  # the bench queue's lease length

    @worker.handler("noop")
    def noop(job):
        started = time.time() * 1000
        submitted = job.payload.get("t") if isinstance(job.payload, dict) else None
        if submitted:
            leased = job.message.lock_deadline - VISIBILITY_MS
            LATENCIES.append([submitted, job.message.created_at, leased, started])

    @atexit.register
    def save():
        with open(os.path.join(os.environ["BENCH_DIR"], f"lat-{os.getpid()}.json"), "w") as f:
            json.dump(LATENCIES, f)
"""
JOB_HEADERS = Headers(content_type="application/json", type="noop")


async def _rest_rate(base: str, path: str, bodies: list[Any], concurrency: int) -> float:
    """Requests per second for ``bodies`` (None: a GET) over ``concurrency`` connections."""
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)

        async def client() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                response = await (http.get(path) if body is None else http.post(path, json=body))
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return len(bodies) / (time.perf_counter() - started)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_us_per_job(pids: list[int], before: list[float], jobs: int) -> tuple[float, float]:
    """CPU microseconds per job since ``before``: the node's (first pid), the workers' together."""
    spent = [_cpu_seconds(pid) - start for pid, start in zip(pids, before, strict=True)]
    return 1e6 * spent[0] / jobs, 1e6 * sum(spent[1:]) / jobs


def _writes(base: str) -> Counter[str]:
    """Raft entries the node proposed ("batches") and writes, by operation; and
    the node's garbage collections, all of them and those over 10 ms."""
    with httpx.Client(base_url=base) as http:
        samples = scrape(http)
    counts: Counter[str] = Counter()
    for (name, labels), value in samples.items():
        if name == "kokaq_commit_batches_total":
            counts["batches"] += int(value)
        elif name == "kokaq_commit_operations_total":
            counts[dict(labels)["operation"]] += int(value)
        elif name == "kokaq_gc_pause_seconds_bucket":
            bound = dict(labels)["le"]
            if bound == "+Inf":
                counts["gc"] += int(value)
                counts["gc_over_10ms"] += int(value)
            elif bound == "0.01":
                counts["gc_over_10ms"] -= int(value)
    return counts


def _acked(client: Client, queue: str) -> int:
    return client.queue("default", queue).stats().totals.get("acked", 0)


def _start_workers(node: NodeProcess, directory: Path, queue: str, count: int) -> list[Any]:
    env = {**os.environ, "BENCH_DIR": str(directory)}
    command = [sys.executable, "-m", "kokaq.repl", "worker", "bench_handlers:worker",
               "--server", node.grpc, "--queues", queue, "--concurrency", "64"]  # fmt: skip
    log = (directory / "workers.log").open("a")
    return [
        subprocess.Popen(command, cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT)
        for _ in range(count)
    ]


def _stop(workers: list[Any]) -> None:
    for process in workers:
        process.send_signal(signal.SIGTERM)
    for process in workers:
        process.wait(60)


def _produce(client: Client, queue: str, count: int, rate: float | None = None) -> float:
    """Enqueue ``count`` no-op jobs (at ``rate`` per second if given); the rate achieved."""
    started = time.perf_counter()
    # Paced jobs leave at once (a batch forms only while earlier ones are out);
    # a flood lingers 5 ms to fill batches.
    linger = 0.0 if rate is not None else 5.0
    with Producer(client, "default", queue, linger_ms=linger) as producer:
        for i in range(count):
            if rate is not None:
                due = started + i / rate
                if (wait := due - time.perf_counter()) > 0:
                    time.sleep(wait)
            payload = json.dumps({"t": time.time() * 1000} if rate else {"i": i})
            producer.send(payload, headers=JOB_HEADERS)
    return count / (time.perf_counter() - started)


def one_run(args: argparse.Namespace, directory: Path) -> dict[str, float]:
    node = start_node(str(directory / "data"))
    try:
        base = f"http://{node.http}"
        out: dict[str, float] = {}
        out["rest_healthz_per_s"] = asyncio.run(_rest_rate(base, "/healthz", [None] * 3000, 16))
        single = [{"type": "noop", "payload": {"i": i}, "queue": "rest"} for i in range(3000)]
        out["rest_submit_per_s"] = asyncio.run(_rest_rate(base, "/v1/jobs", single, 16))
        batches = [
            {"jobs": [{"type": "noop", "payload": {"i": i}, "queue": "rest"} for i in range(500)]}
            for _ in range(60)
        ]
        out["rest_batch_submit_per_s"] = 500 * asyncio.run(
            _rest_rate(base, "/v1/jobs/batch", batches, 4)
        )
        with Client(node.grpc) as client:
            client.create_queue("default", "grpc")
            out["grpc_submit_per_s"] = _produce(client, "grpc", args.jobs)

            client.create_queue("default", "work", QueueConfig(max_deliveries=0))
            (directory / "bench_handlers.py").write_text(textwrap.dedent(HANDLERS))
            workers = _start_workers(node, directory, "work", args.workers)
            time.sleep(2)  # the workers connect
            assert node.process is not None
            pids = [node.process.pid] + [w.pid for w in workers]
            cpu_before = [_cpu_seconds(pid) for pid in pids]
            writes_before = _writes(base)
            started = time.perf_counter()
            _produce(client, "work", args.jobs)
            while _acked(client, "work") < args.jobs:
                time.sleep(0.02)
            out["worker_jobs_per_s"] = args.jobs / (time.perf_counter() - started)
            node_us, workers_us = _cpu_us_per_job(pids, cpu_before, args.jobs)
            out["node_cpu_us_per_job"], out["workers_cpu_us_per_job"] = node_us, workers_us
            writes = _writes(base) - writes_before
            for name in ("batches", "Dequeue", "AckBatch"):
                out[f"{name}_per_1k_jobs"] = 1000 * writes[name] / args.jobs

            count = int(out["worker_jobs_per_s"] * args.latency_seconds / 2)
            writes_before = _writes(base)
            cpu_before = [_cpu_seconds(pid) for pid in pids]
            _produce(client, "work", count, rate=out["worker_jobs_per_s"] / 2)
            while _acked(client, "work") < args.jobs + count:
                time.sleep(0.02)
            node_us, workers_us = _cpu_us_per_job(pids, cpu_before, count)
            out["node_cpu_us_per_job_at_half_load"] = node_us
            out["workers_cpu_us_per_job_at_half_load"] = workers_us
            paced = _writes(base) - writes_before
            for name in ("batches", "Dequeue", "AckBatch"):
                out[f"{name}_per_1k_jobs_at_half_load"] = 1000 * paced[name] / count
            out["node_gc_per_s_at_half_load"] = paced["gc"] / args.latency_seconds
            out["node_gc_over_10ms_at_half_load"] = paced["gc_over_10ms"]
            _stop(workers)
        rows = [r for path in directory.glob("lat-*.json") for r in json.loads(path.read_text())]
        latencies = sorted(started - submitted for submitted, _, _, started in rows)
        out["p99_submit_to_start_ms"] = latencies[int(0.99 * (len(latencies) - 1))]
        out["p50_submit_to_start_ms"] = latencies[len(latencies) // 2]
        parts = {
            "submit_to_enqueue": [c - t for t, c, _, _ in rows],
            "enqueue_to_lease": [le - c for _, c, le, _ in rows],
            "lease_to_start": [s - le for _, _, le, s in rows],
        }
        for part, waits in parts.items():
            waits.sort()
            out[f"p50_{part}_ms"] = waits[len(waits) // 2]
            out[f"p99_{part}_ms"] = waits[int(0.99 * (len(waits) - 1))]
        return out
    finally:
        node.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=40_000)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    args = parser.parse_args()
    runs = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as directory:
            result = one_run(args, Path(directory))
        print(
            f"run {run + 1}: {json.dumps({k: round(v, 1) for k, v in result.items()})}", flush=True
        )
        runs.append(result)
    medians = {key: round(statistics.median(r[key] for r in runs), 1) for key in runs[0]}
    medians["rest_submit_ratio_to_healthz"] = round(
        medians["rest_submit_per_s"] / medians["rest_healthz_per_s"], 3
    )
    medians |= {"workers": args.workers, "jobs": args.jobs, "runs": args.runs}
    print(json.dumps(medians))


if __name__ == "__main__":
    main()
