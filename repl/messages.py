"""Message commands: enqueue, dequeue, peek, get, ack, nack, extend, release,
reprioritize, and ``dlq list | redrive | purge``."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import click

from kokaq.client import calls
from kokaq.client.calls import LockKey
from kokaq.core import FailureReason, Headers, MessageFilter, MessageState
from kokaq.repl.params import DURATION, HEADER
from kokaq.repl.render import emit, message_rows, pretty_payload, readable_time, table
from kokaq.repl.session import Session, client_command

__all__ = ["COMMANDS", "dlq"]


_COUNT = click.option(
    "--count",
    "-c",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="At most this many.",
)


def _payload(payload: str | None, file: click.File | None) -> bytes:
    if file is not None:
        if payload is not None:
            raise click.UsageError("give the payload as an argument or with --file, not both")
        data: bytes = file.read()  # type: ignore[attr-defined]
        return data
    if payload is None or payload == "-":
        if sys.stdin.isatty():
            raise click.UsageError("give a payload, --file F, or pipe it in")
        return sys.stdin.buffer.read()
    return payload.encode()


@click.command(
    epilog="""\b
Examples:
  kokaq enqueue orders '{"id": 1}' --priority 5
  kokaq enqueue orders --file order.json --delay 30s --header type=order
  echo hello | kokaq enqueue orders"""
)
@click.argument("queue")
@click.argument("payload", required=False)
@click.option("--file", "-f", type=click.File("rb"), help="Read the payload from a file.")
@click.option("--priority", "-p", type=int, default=0, show_default=True, help="0 to 2^64-1.")
@click.option("--delay", type=DURATION, help="Ready only after this long.")
@click.option("--ttl", type=DURATION, help="Expire if not done within this long.")
@click.option("--header", "headers", type=HEADER, multiple=True, help="key=value; repeat.")
@click.option("--dedup-key", help="Enqueues with the same key in the window add one message.")
@click.option("--fairness-key", help="The tenant this message is fair-shared as.")
@click.option("--max-deliveries", type=int, help="Override the queue's limit.")
@client_command
def enqueue(
    session: Session,
    queue: str,
    payload: str | None,
    file: click.File | None,
    priority: int,
    delay: int | None,
    ttl: int | None,
    headers: tuple[tuple[str, str], ...],
    dedup_key: str | None,
    fairness_key: str | None,
    max_deliveries: int | None,
) -> None:
    """Add a message to a queue."""
    result = session.queue(queue).enqueue(
        _payload(payload, file),
        priority=priority,
        headers=Headers(user=dict(headers)) if headers else None,
        delay_ms=delay,
        ttl_ms=ttl,
        dedup_key=dedup_key,
        fairness_key=fairness_key,
        max_deliveries=max_deliveries,
    )

    def human() -> None:
        what = "duplicate of" if result.duplicate else "enqueued"
        state = result.state.value if result.state else "gone"
        click.echo(f"{what} {result.message_id} ({state})")

    emit(session, result, human)


@click.command(
    epilog="""\b
Examples:
  kokaq dequeue orders --count 10 --visibility 2m
  kokaq dequeue orders --ack          # take and acknowledge at once"""
)
@click.argument("queue")
@_COUNT
@click.option("--visibility", type=DURATION, help="Lease length (default: the queue's).")
@click.option("--ack", "ack_now", is_flag=True, help="Acknowledge what was leased at once.")
@client_command
def dequeue(
    session: Session, queue: str, count: int, visibility: int | None, ack_now: bool
) -> None:
    """Lease messages (then ack, nack or release each)."""
    q = session.queue(queue)
    leased = q.dequeue(count, visibility_timeout_ms=visibility)
    messages = [job.message for job in leased]
    session.last_leased = messages
    if ack_now and leased:
        errors = [e for e in q.ack_many(leased) if e is not None]
        if errors:
            raise errors[0]
        messages = [m._replace(state=MessageState.SUCCEEDED) for m in messages]
    emit(session, messages, lambda: message_rows(messages, with_lock=not ack_now))


@click.command(epilog="Example: kokaq peek orders --count 5")
@click.argument("queue")
@_COUNT
@client_command
def peek(session: Session, queue: str, count: int) -> None:
    """Show the next messages without leasing them."""
    messages = session.queue(queue).peek(count)
    emit(session, messages, lambda: message_rows(messages))


@click.command("get", epilog="Example: kokaq get orders 3f9a…")
@click.argument("queue")
@click.argument("message_id")
@client_command
def get_message(session: Session, queue: str, message_id: str) -> None:
    """Show one message, whole."""
    message = session.queue(queue).get(message_id)

    def human() -> None:
        for key, value in message._asdict().items():
            click.echo(f"{key}: {_field_text(key, value)}")

    emit(session, message, human)


def _field_text(key: str, value: Any) -> Any:
    if key in ("created_at", "updated_at", "visible_at", "expires_at", "lock_deadline"):
        return readable_time(value)
    if key in ("payload", "result") and value is not None:
        return pretty_payload(value)
    if isinstance(value, FailureReason | MessageState):
        return value.value
    return value


def _lease(session: Session, queue: str, message_id: str, lock_id: str) -> LockKey:
    return LockKey(session.namespace, queue, message_id, lock_id)


_LEASE_ARGUMENTS = [
    click.argument("queue"),
    click.argument("message_id"),
    click.argument("lock_id"),
]


def _lease_command(function: Any) -> Any:
    for argument in reversed(_LEASE_ARGUMENTS):
        function = argument(function)
    return function


@click.command(
    epilog="""\b
Examples:
  kokaq ack orders MESSAGE_ID LOCK_ID
  kokaq ack orders MESSAGE_ID LOCK_ID --result '{"invoice": 42}'"""
)
@_lease_command
@click.option("--result", help="Kept with the message while it is retained (UTF-8 text).")
@client_command
def ack(session: Session, queue: str, message_id: str, lock_id: str, result: str | None) -> None:
    """Acknowledge a leased message: it is done."""
    outcome = None if result is None else result.encode()
    session.client.run(calls.ack(_lease(session, queue, message_id, lock_id), outcome))
    emit(session, {"acked": message_id}, lambda: click.echo(f"acked {message_id}"))


@click.command(
    epilog="""\b
Examples:
  kokaq nack orders MESSAGE_ID LOCK_ID --error "payments timed out"
  kokaq nack orders MESSAGE_ID LOCK_ID --dead-letter"""
)
@_lease_command
@click.option("--error", help="Why it failed (kept as last_error).")
@click.option("--delay", type=DURATION, help="Retry after this long (default: the backoff).")
@click.option("--dead-letter", is_flag=True, help="Send it to the dead-letter queue now.")
@client_command
def nack(
    session: Session,
    queue: str,
    message_id: str,
    lock_id: str,
    error: str | None,
    delay: int | None,
    dead_letter: bool,
) -> None:
    """Fail a leased message: retry it later, or dead-letter it."""
    lease = _lease(session, queue, message_id, lock_id)
    result = session.client.run(
        calls.nack(lease, FailureReason.PROCESSING_ERROR, error, delay, dead_letter)
    )

    def human() -> None:
        when = f" at {readable_time(result.visible_at)}" if result.visible_at else ""
        click.echo(f"{message_id}: {result.outcome.value}{when}")

    emit(session, result, human)


@click.command(epilog="Example: kokaq extend orders MESSAGE_ID LOCK_ID --by 5m")
@_lease_command
@click.option("--by", "add", type=DURATION, required=True, help="Add this much to the lease.")
@client_command
def extend(session: Session, queue: str, message_id: str, lock_id: str, add: int) -> None:
    """Extend a lease."""
    # From the deadline the lease has now: a retry after a lost answer adds once.
    now = session.client.run(calls.get_message(session.namespace, queue, message_id))
    held = now.lock_deadline if now.lock_id == lock_id else None
    lease = _lease(session, queue, message_id, lock_id)
    deadline = session.client.run(calls.extend(lease, add, held))
    emit(
        session,
        {"lock_deadline": deadline},
        lambda: click.echo(f"leased until {readable_time(deadline)}"),
    )


@click.command(epilog="Example: kokaq release orders MESSAGE_ID LOCK_ID --delay 10s")
@_lease_command
@click.option("--delay", type=DURATION, help="Visible again after this long (default: now).")
@client_command
def release(session: Session, queue: str, message_id: str, lock_id: str, delay: int | None) -> None:
    """Give a leased message back without counting a failure."""
    lease = _lease(session, queue, message_id, lock_id)
    visible_at = session.client.run(calls.release(lease, delay, None))
    emit(
        session,
        {"visible_at": visible_at},
        lambda: click.echo(f"released; visible at {readable_time(visible_at)}"),
    )


@click.command(
    epilog="""\b
Examples:
  kokaq reprioritize orders 100 --id MESSAGE_ID
  kokaq reprioritize orders 0 --fairness-key tenant-7 --state ready"""
)
@click.argument("queue")
@click.argument("priority", type=int)
@click.option("--id", "message_id", help="One message.")
@click.option("--fairness-key", help="Messages of this fairness key.")
@click.option("--min-priority", type=int, help="Messages with at least this priority.")
@click.option("--max-priority", type=int, help="Messages with at most this priority.")
@click.option(
    "--state",
    "states",
    type=click.Choice(["ready", "delayed", "dead"]),
    multiple=True,
    help="Messages in this state; repeat (default: all three).",
)
@click.option("--type", "type_", help="Messages whose type header is this.")
@client_command
def reprioritize(
    session: Session,
    queue: str,
    priority: int,
    message_id: str | None,
    fairness_key: str | None,
    min_priority: int | None,
    max_priority: int | None,
    states: tuple[str, ...],
    type_: str | None,
) -> None:
    """Set the priority of one message, or of all that match."""
    where = None
    if message_id is None:
        where = MessageFilter(
            fairness_key=fairness_key,
            min_priority=min_priority,
            max_priority=max_priority,
            type=type_,
        )
        if states:
            where = dataclasses.replace(where, states=tuple(MessageState(s) for s in states))
    count = session.queue(queue).reprioritize(priority, message_id=message_id, where=where)
    emit(session, {"count": count}, lambda: click.echo(f"reprioritized {count} messages"))


# -- the dead-letter queue ---------------------------------------------------------------


@click.group()
def dlq() -> None:
    """The dead-letter queue of a queue: list, redrive, purge."""


@dlq.command("list", epilog="Example: kokaq dlq list orders --limit 20")
@click.argument("queue")
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=100,
    show_default=True,
    help="At most this many.",
)
@click.option("--after", type=int, help="The cursor a previous page printed.")
@client_command
def dlq_list(session: Session, queue: str, limit: int, after: int | None) -> None:
    """List dead messages, oldest first, a page at a time."""
    page = session.queue(queue).list_dead(limit, after)

    def human() -> None:
        rows = [[m.id, m.deliveries, m.failure_reason, m.last_error] for m in page.messages]
        table(rows, ["id", "deliveries", "reason", "last_error"])
        if page.next_cursor is not None:
            click.echo(f"more: --after {page.next_cursor}")

    emit(session, page, human)


@dlq.command("redrive", epilog="Example: kokaq dlq redrive orders        # all of them")
@click.argument("queue")
@click.argument("message_ids", nargs=-1)
@client_command
def dlq_redrive(session: Session, queue: str, message_ids: tuple[str, ...]) -> None:
    """Put dead messages back in the queue (the ones named, or all)."""
    count = session.queue(queue).redrive(list(message_ids) or None)
    emit(session, {"count": count}, lambda: click.echo(f"redrove {count} messages"))


@dlq.command("purge", epilog="Example: kokaq dlq purge orders MESSAGE_ID")
@click.argument("queue")
@click.argument("message_ids", nargs=-1)
@client_command
def dlq_purge(session: Session, queue: str, message_ids: tuple[str, ...]) -> None:
    """Delete dead messages for good (the ones named, or all)."""
    count = session.queue(queue).purge_dead(list(message_ids) or None)
    emit(session, {"count": count}, lambda: click.echo(f"purged {count} dead messages"))


COMMANDS = [enqueue, dequeue, peek, get_message, ack, nack, extend, release, reprioritize, dlq]
