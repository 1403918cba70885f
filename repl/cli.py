"""The ``kokaq`` command.

Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 unauthenticated or
forbidden, 5 unavailable (no node reachable, or no leader). Errors print as
``Error: <message>`` on stderr; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import sys
from importlib import metadata
from typing import Any

import click

from kokaq.core import (
    InvalidArgument,
    KokaqError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from kokaq.repl.params import DURATION
from kokaq.repl.session import Session, client_command

__all__ = ["EXIT_CODES", "cli", "exit_code", "main"]

EXIT_CODES: list[tuple[type[KokaqError], int]] = [
    (NotFound, 3),
    (Unauthenticated, 4),
    (PermissionDenied, 4),
    (Unavailable, 5),
]


def exit_code(error: KokaqError) -> int:
    return next((code for kind, code in EXIT_CODES if isinstance(error, kind)), 1)


def error_line(error: KokaqError) -> str:
    if isinstance(error, InvalidArgument) and error.field:
        return f"Error: {error.field}: {error.reason}"
    return f"Error: {error.message}"


class _Commands(click.Group):
    """Catches every KokaqError once, at the top."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KokaqError as error:
            if ctx.meta.get("kokaq.debug"):
                raise
            click.echo(error_line(error), err=True)
            ctx.exit(exit_code(error))


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """kokaq: a distributed priority queue and job queue.

    \b
    Client commands take --server, --api-key, --namespace and --json
    (or KOKAQ_SERVER, KOKAQ_API_KEY, KOKAQ_NAMESPACE).
    Exit codes: 0 ok, 1 error, 2 usage, 3 not found,
    4 unauthenticated or forbidden, 5 unavailable.
    """
    ctx.meta["kokaq.debug"] = debug


@cli.command(epilog="Example: kokaq version")
def version() -> None:
    """Print kokaq's version."""
    click.echo(f"kokaq {metadata.version('kokaq')}")


@cli.command()
@click.option(
    "--data-dir",
    default="./kokaq-data",
    show_default=True,
    envvar="KOKAQ_DATA_DIR",
    help="Where the Raft journal and snapshots live.",
)
@click.option(
    "--grpc-listen",
    default="127.0.0.1:9000",
    show_default=True,
    envvar="KOKAQ_GRPC_LISTEN",
    help="gRPC address; port 0 picks a free port.",
)
@click.option(
    "--http-listen",
    default="127.0.0.1:8080",
    show_default=True,
    envvar="KOKAQ_HTTP_LISTEN",
    help="REST, metrics and dashboard address.",
)
@click.option(
    "--raft-listen",
    default="127.0.0.1:9100",
    show_default=True,
    envvar="KOKAQ_RAFT_LISTEN",
    help="Raft address; binds only this address.",
)
@click.option(
    "--peers",
    default="",
    envvar="KOKAQ_PEERS",
    help="Other members' Raft addresses, comma-separated; none = a single node.",
)
@click.option(
    "--cluster-secret",
    envvar="KOKAQ_CLUSTER_SECRET",
    help="Shared secret of the Raft group (required with --peers).",
)
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    envvar="KOKAQ_API_KEYS",
    help="KEY:ROLE[:NAMESPACE], ROLE admin|producer|consumer; repeat or comma-separate.",
)
@click.option(
    "--election-timeout",
    type=(DURATION, DURATION),
    default=("400ms", "1200ms"),
    show_default=True,
    envvar="KOKAQ_ELECTION_TIMEOUT",
    help="A follower that hears no leader for a random time in MIN MAX starts an election.",
)
@click.option(
    "--heartbeat",
    type=DURATION,
    default="10ms",
    show_default=True,
    envvar="KOKAQ_HEARTBEAT",
    help="How often the leader sends append-entries (heartbeats).",
)
@click.option(
    "--metrics-need-key",
    is_flag=True,
    envvar="KOKAQ_METRICS_NEED_KEY",
    help="Serve /metrics only to requests with an API key (default: open to scrapers).",
)
@click.option(
    "--log-format",
    type=click.IntRange(min=1),
    envvar="KOKAQ_LOG_FORMAT",
    help="Hold the cluster to this Raft log format (default: this build's newest), "
    "to keep a rolling upgrade's way back open; see the README.",
)
@click.option(
    "--compaction-entries",
    type=click.IntRange(min=10),
    default=20_000,
    hidden=True,
    help="Compact the Raft log past this many entries (tests set it low).",
)
def server(
    data_dir: str,
    grpc_listen: str,
    http_listen: str,
    raft_listen: str,
    peers: str,
    cluster_secret: str | None,
    api_keys: tuple[str, ...],
    election_timeout: tuple[int, int],
    heartbeat: int,
    metrics_need_key: bool,
    log_format: int | None,
    compaction_entries: int,
) -> None:
    """Run a node (a single durable node unless --peers is given).

    \b
    Examples:
      kokaq server
      kokaq server --grpc-listen 127.0.0.1:0 --raft-listen 127.0.0.1:0 --data-dir /tmp/k
      kokaq server --api-key s3cretkey:admin --api-key pushkey01:producer:orders
      kokaq server --raft-listen 10.0.0.5:9100 --peers 10.0.0.6:9100,10.0.0.7:9100 \\
                   --cluster-secret "$SECRET" --election-timeout 300ms 900ms
    """
    # Imported here: client commands should not load the server's dependencies.
    from kokaq.server.auth import parse_keys  # noqa: PLC0415
    from kokaq.server.node import NodeOptions, serve  # noqa: PLC0415

    try:
        options = NodeOptions(
            data_dir=data_dir,
            grpc_listen=grpc_listen,
            http_listen=http_listen,
            raft_listen=raft_listen,
            peers=tuple(p.strip() for p in peers.split(",") if p.strip()),
            api_keys=tuple(parse_keys(api_keys)),
            cluster_secret=cluster_secret,
            metrics_need_key=metrics_need_key,
            raft=raft_settings(election_timeout, heartbeat, compaction_entries),
            **({} if log_format is None else {"log_format": log_format}),
        )
        serve(options)
    except KokaqError as error:
        click.echo(f"Error: {error.message}", err=True)
        sys.exit(1)


def raft_settings(election_timeout: tuple[int, int], heartbeat: int, compaction: int) -> Any:
    """RaftSettings from the command line, checked: a heartbeat well inside the
    election timeout, or followers would call elections on a healthy leader."""
    from kokaq.server.replication import RaftSettings  # noqa: PLC0415

    low, high = election_timeout
    if not 50 <= low < high <= 60_000:
        raise InvalidArgument("election_timeout", "give MIN MAX with 50ms <= MIN < MAX <= 60s")
    if not 1 <= heartbeat <= low // 4:
        raise InvalidArgument("heartbeat", "must be at least 1ms and at most a quarter of MIN")
    return RaftSettings(
        append_entries_period=heartbeat / 1000,
        election_timeout_min=low / 1000,
        election_timeout_max=high / 1000,
        leader_fallback=max(2.0, high / 1000),  # never before followers would elect
        compaction_entries=compaction,
    )


@cli.command(
    epilog="""\b
Examples:
  kokaq repl
  kokaq repl --server 10.0.0.5:9000 -n billing"""
)
@client_command
def repl(session: Session) -> None:
    """An interactive shell: every command, plus namespace use and queue use."""
    from kokaq.repl.shell import Shell, open_history  # noqa: PLC0415

    Shell(session, history=open_history()).run()


def _register() -> None:
    from kokaq.repl.admin import namespace, queue  # noqa: PLC0415
    from kokaq.repl.bench import bench  # noqa: PLC0415
    from kokaq.repl.cluster import cluster  # noqa: PLC0415
    from kokaq.repl.jobs import jobs  # noqa: PLC0415
    from kokaq.repl.messages import COMMANDS  # noqa: PLC0415
    from kokaq.repl.schedules import schedule  # noqa: PLC0415
    from kokaq.repl.worker import worker  # noqa: PLC0415

    for command in [namespace, queue, *COMMANDS, jobs, schedule, cluster, worker, bench]:
        cli.add_command(command)


_register()


def main() -> None:
    cli()
