"""``kokaq namespace …`` and ``kokaq queue …``."""

from __future__ import annotations

from typing import Any

import click

from kokaq.core import NamespaceConfig, NamespaceInfo, QueueConfig, QueueInfo
from kokaq.repl.params import DURATION, JSON_OBJECT
from kokaq.repl.render import emit, readable_ms, readable_time, table
from kokaq.repl.session import Session, client_command

__all__ = ["namespace", "queue"]


# -- namespaces --------------------------------------------------------------------------


@click.group()
def namespace() -> None:
    """Create, inspect and delete namespaces (groups of queues)."""


def _namespace_options(function: Any) -> Any:
    function = click.option("--description", help="Free text, up to 1024 characters.")(function)
    return click.option("--max-queues", type=int, help="At most this many queues.")(function)


def _namespace_config(
    base: NamespaceConfig, description: str | None, max_queues: int | None
) -> NamespaceConfig:
    data = base.to_dict()
    if description is not None:
        data["description"] = description
    if max_queues is not None:
        data["max_queues"] = max_queues
    return NamespaceConfig.from_dict(data)


def _show_namespaces(infos: list[NamespaceInfo]) -> None:
    rows = []
    for i in infos:
        created = readable_time(i.created_at)
        rows.append([i.name, i.queue_count, i.config.max_queues, created, i.config.description])
    table(rows, ["name", "queues", "max_queues", "created", "description"])


@namespace.command("create", epilog="Example: kokaq namespace create billing --max-queues 20")
@click.argument("name")
@_namespace_options
@client_command
def namespace_create(
    session: Session, name: str, description: str | None, max_queues: int | None
) -> None:
    """Create a namespace."""
    config = _namespace_config(NamespaceConfig(), description, max_queues)
    info = session.client.create_namespace(name, config)
    emit(session, info, lambda: click.echo(f"created namespace {info.name}"))


@namespace.command("get", epilog="Example: kokaq namespace get billing --json")
@click.argument("name")
@client_command
def namespace_get(session: Session, name: str) -> None:
    """Show one namespace."""
    info = session.client.get_namespace(name)
    emit(session, info, lambda: _show_namespaces([info]))


@namespace.command("list", epilog="Example: kokaq namespace list")
@client_command
def namespace_list(session: Session) -> None:
    """List namespaces."""
    infos = session.client.list_namespaces()
    emit(session, infos, lambda: _show_namespaces(infos))


@namespace.command("update", epilog="Example: kokaq namespace update billing --max-queues 50")
@click.argument("name")
@_namespace_options
@client_command
def namespace_update(
    session: Session, name: str, description: str | None, max_queues: int | None
) -> None:
    """Change a namespace's settings (the ones given; the rest stay)."""
    current = session.client.get_namespace(name).config
    info = session.client.update_namespace(
        name, _namespace_config(current, description, max_queues)
    )
    emit(session, info, lambda: click.echo(f"updated namespace {info.name}"))


@namespace.command("delete", epilog="Example: kokaq namespace delete billing --force")
@click.argument("name")
@click.option("--force", is_flag=True, help="Delete it with its queues and messages.")
@client_command
def namespace_delete(session: Session, name: str, force: bool) -> None:
    """Delete a namespace (an empty one, unless --force)."""
    session.client.delete_namespace(name, force=force)
    emit(session, {"deleted": name}, lambda: click.echo(f"deleted namespace {name}"))


# -- queues ---------------------------------------------------------------------------------


@click.group()
def queue() -> None:
    """Create, inspect, pause, purge and delete queues."""


_QUEUE_OPTIONS = [
    click.option("--visibility", type=DURATION, help="Lease length (1s to 12h)."),
    click.option("--max-deliveries", type=int, help="Deliveries allowed; 0 = no limit."),
    click.option("--dead-letter/--no-dead-letter", default=None, help="Keep failed messages."),
    click.option("--ttl", type=DURATION, help="Default time to live of a message."),
    click.option("--min-priority", type=int, help="Smallest priority accepted."),
    click.option("--max-priority", type=int, help="Largest priority accepted."),
    click.option("--dedup-window", type=DURATION, help="How long a dedup key is remembered."),
    click.option("--max-length", type=int, help="At most this many messages held."),
    click.option("--max-payload", type=int, help="Largest payload, in bytes."),
    click.option(
        "--config",
        "settings",
        type=JSON_OBJECT,
        help="Any QueueConfig settings as JSON (inline or @file); options given win.",
    ),
]  # fmt: skip

# option name -> QueueConfig field
_QUEUE_FIELDS = {
    "visibility": "visibility_timeout_ms",
    "max_deliveries": "max_deliveries",
    "dead_letter": "dead_letter",
    "ttl": "default_ttl_ms",
    "min_priority": "min_priority",
    "max_priority": "max_priority",
    "dedup_window": "dedup_window_ms",
    "max_length": "max_length",
    "max_payload": "max_payload_bytes",
}


def _queue_options(function: Any) -> Any:
    for option in reversed(_QUEUE_OPTIONS):
        function = option(function)
    return function


def _queue_config(base: QueueConfig, settings: dict[str, Any] | None, **given: Any) -> QueueConfig:
    data = {**base.to_dict(), **(settings or {})}
    for option, value in given.items():
        if value is not None:
            data[_QUEUE_FIELDS[option]] = value
    return QueueConfig.from_dict(data)


def _show_queues(session: Session, infos: list[QueueInfo]) -> None:
    rows = []
    for i in infos:
        stats = session.client.queue(i.namespace, i.name).stats()
        rows.append(
            [
                i.name if i.paused_at is None else f"{i.name} (paused)",
                stats.ready,
                stats.delayed,
                stats.leased,
                stats.dead,
                readable_ms(i.config.visibility_timeout_ms),
                i.config.max_deliveries,
            ]
        )
    table(rows, ["name", "ready", "delayed", "leased", "dead", "visibility", "max_deliveries"])


@queue.command(
    "create", epilog="Example: kokaq queue create orders --visibility 2m --max-deliveries 5"
)
@click.argument("name")
@_queue_options
@client_command
def queue_create(
    session: Session, name: str, settings: dict[str, Any] | None, **given: Any
) -> None:
    """Create a queue in the namespace."""
    config = _queue_config(QueueConfig(), settings, **given)
    info = session.client.create_queue(session.namespace, name, config)
    emit(session, info, lambda: click.echo(f"created queue {info.namespace}/{info.name}"))


@queue.command("get", epilog="Example: kokaq queue get orders --json")
@click.argument("queue")
@client_command
def queue_get(session: Session, queue: str) -> None:
    """Show one queue: its counts and settings."""
    info = session.client.get_queue(session.namespace, queue)

    def human() -> None:
        _show_queues(session, [info])
        click.echo()
        for key, value in sorted(info.config.to_dict().items()):
            click.echo(f"{key}: {value}")

    emit(session, info, human)


@queue.command("list", epilog="Example: kokaq queue list -n billing")
@client_command
def queue_list(session: Session) -> None:
    """List the namespace's queues with their counts."""
    infos = session.client.list_queues(session.namespace)
    emit(session, infos, lambda: _show_queues(session, infos))


@queue.command("update", epilog="Example: kokaq queue update orders --visibility 5m")
@click.argument("name")
@_queue_options
@client_command
def queue_update(
    session: Session, name: str, settings: dict[str, Any] | None, **given: Any
) -> None:
    """Change a queue's settings (the ones given; the rest stay)."""
    current = session.client.get_queue(session.namespace, name).config
    info = session.client.update_queue(
        session.namespace, name, _queue_config(current, settings, **given)
    )
    emit(session, info, lambda: click.echo(f"updated queue {info.namespace}/{info.name}"))


@queue.command("delete", epilog="Example: kokaq queue delete orders --force")
@click.argument("name")
@click.option("--force", is_flag=True, help="Delete it with its messages.")
@client_command
def queue_delete(session: Session, name: str, force: bool) -> None:
    """Delete a queue (an empty one, unless --force)."""
    session.client.delete_queue(session.namespace, name, force=force)
    emit(session, {"deleted": name}, lambda: click.echo(f"deleted queue {name}"))


@queue.command("purge", epilog="Example: kokaq queue purge orders")
@click.argument("queue")
@client_command
def queue_purge(session: Session, queue: str) -> None:
    """Drop every message of a queue (its settings stay)."""
    count = session.queue(queue).purge()
    emit(session, {"purged": count}, lambda: click.echo(f"purged {count} messages"))


@queue.command("pause", epilog="Example: kokaq queue pause orders")
@click.argument("queue")
@client_command
def queue_pause(session: Session, queue: str) -> None:
    """Dispatch nothing from a queue until it is resumed (consumers and
    workers get nothing from it; enqueues, settles and timers go on)."""
    info = session.queue(queue).pause()
    emit(session, info, lambda: click.echo(f"paused queue {info.namespace}/{info.name}"))


@queue.command("resume", epilog="Example: kokaq queue resume orders")
@click.argument("queue")
@client_command
def queue_resume(session: Session, queue: str) -> None:
    """Dispatch from a paused queue again."""
    info = session.queue(queue).resume()
    emit(session, info, lambda: click.echo(f"resumed queue {info.namespace}/{info.name}"))


@queue.command("stats", epilog="Example: kokaq queue stats orders")
@click.argument("queue")
@client_command
def queue_stats(session: Session, queue: str) -> None:
    """Counts by state, the oldest ready message's age, and lifetime totals."""
    stats = session.queue(queue).stats()

    def human() -> None:
        rows = [
            ["ready", stats.ready],
            ["delayed", stats.delayed],
            ["leased", stats.leased],
            ["succeeded", stats.succeeded],
            ["dead", stats.dead],
        ]
        rows += [[f"total {k}", v] for k, v in sorted(stats.totals.items())]
        table(rows, ["count", "value"])
        click.echo(f"oldest ready: {readable_ms(stats.oldest_ready_age_ms)} ago")
        if stats.paused:
            click.echo("paused: dispatches nothing until `kokaq queue resume`")

    emit(session, stats, human)
