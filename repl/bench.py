"""``kokaq bench``: a quick load against a node — produce, then consume —
with a progress bar, printing throughput and latency percentiles.

For the measured, reproducible figures see ``benchmarks/``; this is the
operator's smoke test of a deployment."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import click

from kokaq.client import Producer
from kokaq.core import AlreadyExists, QueueConfig
from kokaq.repl.render import emit, table
from kokaq.repl.session import Session, client_command

__all__ = ["bench"]


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50 / p95 / p99 in milliseconds, nearest rank (0 with no samples)."""
    if not seconds:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0}
    ordered = sorted(seconds)

    def at(fraction: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 3)

    return {"p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99)}


def _timer(samples: list[float]) -> Callable[[Any], None]:
    """A done-callback that records the seconds since it was made."""
    begun = time.perf_counter()

    def done(_: Any) -> None:
        samples.append(time.perf_counter() - begun)

    return done


@click.command(
    epilog="""\b
Examples:
  kokaq bench
  kokaq bench --messages 100000 --size 1024 --queue load-test
  kokaq bench --server 10.0.0.5:9000 --json"""
)
@click.option("--queue", "-q", default="bench", show_default=True, help="Made if missing.")
@click.option("--messages", "-m", type=click.IntRange(1, 10_000_000), default=10_000,
              show_default=True, help="How many to produce, then consume.")  # fmt: skip
@click.option("--size", type=click.IntRange(0, 1024 * 1024), default=100, show_default=True,
              help="Payload bytes.")  # fmt: skip
@click.option("--batch", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="Messages per dequeue (and per ack batch).")  # fmt: skip
@client_command
def bench(session: Session, queue: str, messages: int, size: int, batch: int) -> None:
    """Produce MESSAGES to a queue, then consume and ack them; print the rates."""
    client = session.client
    with contextlib.suppress(AlreadyExists):
        client.create_queue(session.namespace, queue, QueueConfig(dedup_window_ms=0))
    target = client.queue(session.namespace, queue)
    payload = bytes(size)
    show = not session.as_json

    sent: list[float] = []
    started = time.perf_counter()
    with (
        Producer(client, session.namespace, queue) as producer,
        click.progressbar(length=messages, label="produce", hidden=not show) as bar,
    ):
        for _ in range(messages):
            producer.send(payload).add_done_callback(_timer(sent))
            bar.update(1)
    produce_seconds = time.perf_counter() - started

    batches: list[float] = []
    consumed = 0
    started = time.perf_counter()
    with click.progressbar(length=messages, label="consume", hidden=not show) as bar:
        while consumed < messages:
            begun = time.perf_counter()
            leased = target.dequeue(max_count=min(batch, messages - consumed))
            if not leased:
                continue  # delayed by nothing: the last acks are on their way
            target.ack_many(leased)
            batches.append(time.perf_counter() - begun)
            consumed += len(leased)
            bar.update(len(leased))
    consume_seconds = time.perf_counter() - started

    result: dict[str, Any] = {
        "messages": messages,
        "payload_bytes": size,
        "produce": {"per_s": round(messages / produce_seconds), **percentiles(sent)},
        "consume": {"per_s": round(messages / consume_seconds), **percentiles(batches)},
    }

    def human() -> None:
        rows = [
            [phase, result[phase]["per_s"], result[phase]["p50_ms"], result[phase]["p95_ms"],
             result[phase]["p99_ms"]]
            for phase in ("produce", "consume")
        ]  # fmt: skip
        table(rows, ["phase", "msgs/s", "p50 ms", "p95 ms", "p99 ms"])
        click.echo(
            f"(produce: each message's send to its answer; consume: each dequeue+ack of {batch})"
        )

    emit(session, result, human)
