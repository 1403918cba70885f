"""``kokaq jobs``: the job face (quorractl's create / get / queues / stats, and
list / cancel). A job is a message with a ``type`` header and a JSON payload;
``kokaq.protocol.jobs`` holds the mapping, shared with the REST API."""

from __future__ import annotations

import contextlib
import json
from typing import Any, TypeVar

import click

from kokaq.client import calls
from kokaq.core import (
    AlreadyExists,
    InvalidArgument,
    MessageView,
    NamespaceNotFound,
    QueueNotFound,
)
from kokaq.protocol.jobs import (
    DEFAULT_NAMESPACE,
    JOB_QUEUE_CONFIG,
    JOB_STATUSES,
    STATES_OF_STATUS,
    iso,
    job_json,
    job_spec,
    job_status,
    newest_jobs,
    status_counts,
)
from kokaq.repl.params import DURATION
from kokaq.repl.render import emit, readable_ms, table
from kokaq.repl.session import Session, client_command

__all__ = ["jobs", "parse_payload", "run_making_queue", "show_fields"]

_T = TypeVar("_T")


@click.group()
def jobs() -> None:
    """Jobs: submit, get, list, cancel; counts per queue and status; totals."""


def run_making_queue(session: Session, queue: str, call: calls.Call[_T]) -> _T:
    """Run a call on a queue (an enqueue, a schedule), making the queue (and the
    default namespace) on first use, as the REST API does; that needs an admin key."""
    client = session.client
    try:
        return client.run(call)
    except (NamespaceNotFound, QueueNotFound) as missing:
        if isinstance(missing, NamespaceNotFound):
            if session.namespace != DEFAULT_NAMESPACE:
                raise
            with contextlib.suppress(AlreadyExists):  # another submit made it
                client.create_namespace(DEFAULT_NAMESPACE)
        with contextlib.suppress(AlreadyExists):
            client.create_queue(session.namespace, queue, JOB_QUEUE_CONFIG)
        return client.run(call)


@jobs.command(
    "submit",
    epilog="""\b
Examples:
  kokaq jobs submit email_send '{"to": "a@example.com"}' --priority 10
  kokaq jobs submit reminder '{"text": "hi"}' --delay 60s --max-retries 5 -q later
  kokaq jobs submit report --idempotency-key report-2026-12-01""",
)
@click.argument("job_type")
@click.argument("payload", default="{}")
@click.option("--queue", "-q", default="default", show_default=True, help="Made on first use.")
@click.option("--priority", "-p", type=int, default=0, show_default=True, help="0 to 2^64-1.")
@click.option("--delay", type=DURATION, help="Run no sooner than this long from now.")
@click.option("--max-retries", type=click.IntRange(0, 10_000), default=3, show_default=True)
@click.option("--ttl", type=DURATION, help="Give up on it if not done within this long.")
@click.option("--idempotency-key", help="A repeat within the dedup window returns the first job.")
@click.option("--fairness-key", help="The tenant it is fair-shared as.")
@client_command
def submit(
    session: Session,
    job_type: str,
    payload: str,
    queue: str,
    priority: int,
    delay: int | None,
    max_retries: int,
    ttl: int | None,
    idempotency_key: str | None,
    fairness_key: str | None,
) -> None:
    """Submit a job: TYPE and a JSON PAYLOAD (default {})."""
    spec = job_spec(
        job_type,
        parse_payload(payload),
        priority=priority,
        delay_ms=delay,
        max_retries=max_retries,
        ttl_ms=ttl,
        idempotency_key=idempotency_key,
        fairness_key=fairness_key,
    )
    result = run_making_queue(session, queue, calls.enqueue(session.namespace, queue, spec))
    status = "pending" if not result.duplicate else "duplicate of an earlier submit"
    created = {
        "id": result.message_id,
        "status": "pending",
        "run_at": iso(result.visible_at),
        "duplicate": result.duplicate,
    }
    emit(
        session,
        created,
        lambda: click.echo(f"{result.message_id}  {status}, runs at {iso(result.visible_at)}"),
    )


def parse_payload(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        raise InvalidArgument("payload", f"must be JSON: {error}") from None


def show_fields(job: dict[str, Any]) -> None:
    """A job (or a schedule) as aligned ``key  value`` lines, its payload and
    result indented below."""
    width = max(len(key) for key in job)
    for key, value in job.items():
        if key in ("payload", "payload_base64", "result", "result_base64"):
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        click.echo(f"{key.ljust(width)}  {'-' if value is None else text}")
    for name in ("payload", "result"):
        if name not in job and f"{name}_base64" not in job:
            continue  # a schedule has no result
        value = job.get(name)
        if value is None:
            value = job.get(f"{name}_base64")  # not JSON: its base64
        click.echo(f"{name}:")
        click.echo(json.dumps(value, indent=2, ensure_ascii=False) if value is not None else "-")


@jobs.command("get", epilog="Example: kokaq jobs get 3f2a… --json")
@click.argument("job_id")
@client_command
def get(session: Session, job_id: str) -> None:
    """A job by id (in any queue of the namespace)."""
    job = job_json(session.client.find_message(session.namespace, job_id))
    emit(session, job, lambda: show_fields(job))


def _job_rows(views: list[MessageView]) -> None:
    rows = [
        [v.id, v.headers.type if v.headers else None, v.queue, job_status(v), v.deliveries,
         v.priority, iso(v.created_at), v.last_error]
        for v in views
    ]  # fmt: skip
    table(rows, ["id", "type", "queue", "status", "attempts", "priority", "created", "last_error"])


@jobs.command(
    "list",
    epilog="""\b
Examples:
  kokaq jobs list
  kokaq jobs list -q emails --status failed --limit 50""",
)
@click.option("--queue", "-q", help="One queue (default: every queue of the namespace).")
@click.option("--status", type=click.Choice(JOB_STATUSES), help="Only jobs in this status.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@client_command
def list_jobs(session: Session, queue: str | None, status: str | None, limit: int) -> None:
    """The newest jobs first."""
    client = session.client
    names = [queue] if queue else [q.name for q in client.list_queues(session.namespace)]
    states = STATES_OF_STATUS[status] if status else ()
    found: list[MessageView] = []
    for name in names:
        found += client.queue(session.namespace, name).list_messages(states, min(1000, limit * 4))
    chosen = newest_jobs(found, status, limit)
    emit(session, [job_json(v) for v in chosen], lambda: _job_rows(chosen))


@jobs.command("cancel", epilog="Example: kokaq jobs cancel 3f2a…")
@click.argument("job_id")
@client_command
def cancel(session: Session, job_id: str) -> None:
    """Cancel a pending, failed or dead job (a leased one belongs to its worker)."""
    client = session.client
    found = client.find_message(session.namespace, job_id)
    cancelled = client.queue(session.namespace, found.queue).cancel(job_id)
    job = job_json(cancelled) | {"status": "cancelled"}
    emit(session, job, lambda: click.echo(f"{job_id}  cancelled (was {job_status(cancelled)})"))


@jobs.command("queues", epilog="Example: kokaq jobs queues --json")
@client_command
def queues(session: Session) -> None:
    """Job counts per queue and status (jobs waiting for a retry count as pending)."""
    client = session.client
    rows = []
    for info in client.list_queues(session.namespace):
        counts = status_counts(client.queue(session.namespace, info.name).stats())
        rows.append([info.name, *counts.values()])
    headers = ["queue", "pending", "leased", "succeeded", "dead"]
    emit(
        session,
        [dict(zip(headers, row, strict=True)) for row in rows],
        lambda: table(rows, headers),
    )


@jobs.command("stats", epilog="Example: kokaq jobs stats")
@client_command
def stats(session: Session) -> None:
    """Totals per queue since it was made, and the oldest waiting job's age."""
    client = session.client
    rows: list[list[Any]] = []
    for info in client.list_queues(session.namespace):
        s = client.queue(session.namespace, info.name).stats()
        t = s.totals
        rows.append([info.name, t.get("enqueued", 0), t.get("acked", 0), t.get("nacked", 0),
                     t.get("dead_lettered", 0), s.oldest_ready_age_ms])  # fmt: skip
    headers = ["queue", "submitted", "succeeded", "failed", "dead", "oldest_wait_ms"]

    def human() -> None:
        table([[*row[:-1], readable_ms(row[-1])] for row in rows], [*headers[:-1], "oldest_wait"])

    emit(session, [dict(zip(headers, row, strict=True)) for row in rows], human)
