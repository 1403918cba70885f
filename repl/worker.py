"""``kokaq worker module:attr``: run job handlers until SIGTERM.

``module:attr`` names a ``kokaq.client.Worker`` (its handlers and their own
timeouts, and its queues, concurrency and ``job_timeout`` where the command
line gives none; the connection comes from the command line) or a mapping of
job type to handler.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

import click

from kokaq.core import InvalidArgument
from kokaq.repl.session import Session, client_command

__all__ = ["parse_queues", "worker"]


def parse_queues(text: str) -> dict[str, int]:
    """``a,b`` (weight 1 each) or ``high:5,low:1``."""
    queues: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, weight = item.partition(":")
        if not weight:
            queues[name] = 1
        elif weight.isdigit() and int(weight) >= 1:
            queues[name] = int(weight)
        else:
            raise InvalidArgument("queues", f"weight of {name!r} must be a whole number >= 1")
    if not queues:
        raise InvalidArgument("queues", "name at least one queue")
    return queues


class Loaded(NamedTuple):
    """What ``module:attr`` gives the command: its handlers, and, from a
    Worker, their own timeouts and its settings (the command line's win)."""

    handlers: Mapping[str, Any]
    timeouts: Mapping[str, float] = {}
    job_timeout: float | None = None
    queues: dict[str, int] | None = None
    concurrency: int | None = None


def load_handlers(target: str) -> Loaded:
    """What ``target`` names: a Worker or a mapping of job type to handler."""
    from kokaq.client import Worker  # noqa: PLC0415

    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise InvalidArgument("target", "must be module:attribute, e.g. app.jobs:worker")
    here = os.getcwd()  # as `python -m` would: the working directory's modules
    if here not in sys.path:
        sys.path.insert(0, here)
    importlib.invalidate_caches()
    try:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as error:
        raise InvalidArgument("target", f"cannot load {target}: {error}") from None
    handlers = found.handlers if isinstance(found, Worker) else found
    if not isinstance(handlers, Mapping) or not handlers:
        raise InvalidArgument("target", f"{target} is neither a Worker nor a mapping of handlers")
    if isinstance(found, Worker):
        settings = found.job_timeout, dict(found.queues), found.concurrency
        return Loaded(handlers, found.handler_timeouts, *settings)
    return Loaded(handlers)


@click.command(
    epilog="""\b
Examples:
  kokaq worker app.jobs:worker --queues emails,reports --concurrency 8
  kokaq worker app.jobs:handlers --queues high:5,low:1 -n billing
  KOKAQ_WORKER_QUEUES=high:5,low:1 kokaq worker app.jobs:worker"""
)
@click.argument("target")
@click.option(
    "--queues",
    envvar="KOKAQ_WORKER_QUEUES",
    help="Queues, comma-separated, with weights as name:weight "
    "[the Worker's, else default; env KOKAQ_WORKER_QUEUES].",
)
@click.option(
    "--concurrency",
    envvar="KOKAQ_WORKER_CONCURRENCY",
    type=click.IntRange(1, 1000),
    help="Handlers running at once [the Worker's, else 8; env KOKAQ_WORKER_CONCURRENCY].",
)
@click.option(
    "--prefetch", type=click.IntRange(1, 1000), help="Jobs held at once [twice the concurrency]."
)
@click.option(
    "--worker-id",
    envvar="KOKAQ_WORKER_ID",
    help="Name in logs and GET /v1/workers [env KOKAQ_WORKER_ID].",
)
@click.option("--grace", type=click.FloatRange(0), default=30.0, show_default=True,
              help="Seconds running jobs get to finish on SIGTERM.")  # fmt: skip
@click.option(
    "--job-timeout",
    envvar="KOKAQ_WORKER_JOB_TIMEOUT",
    type=click.FloatRange(0, 7 * 24 * 3600, min_open=True),
    help="Seconds a handler may run before its job is nacked as handler_timeout "
    "(a handler's own timeout wins) [no limit; env KOKAQ_WORKER_JOB_TIMEOUT].",
)
@client_command
def worker(
    session: Session,
    target: str,
    queues: str | None,
    concurrency: int | None,
    prefetch: int | None,
    worker_id: str | None,
    grace: float,
    job_timeout: float | None,
) -> None:
    """Run job handlers on jobs leased from the node, until SIGTERM."""
    from kokaq.client import Worker  # noqa: PLC0415

    loaded = load_handlers(target)
    runner = Worker(
        list(session.servers),
        namespace=session.namespace,
        queues=parse_queues(queues) if queues is not None else loaded.queues or {"default": 1},
        concurrency=concurrency or loaded.concurrency or 8,
        prefetch=prefetch,
        api_key=session.api_key,
        worker_id=worker_id,
        grace=grace,
        job_timeout=loaded.job_timeout if job_timeout is None else job_timeout,
    )
    for job_type, handler in loaded.handlers.items():
        runner.handler(job_type, timeout=loaded.timeouts.get(job_type))(handler)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    click.echo(
        f"kokaq worker {runner.worker_id}: types {', '.join(runner.job_types)} "
        f"from {', '.join(f'{q}:{w}' for q, w in runner.queues)}",
        err=True,
    )
    runner.run()
    click.echo(
        f"kokaq worker {runner.worker_id} stopped: {runner.processed} jobs settled", err=True
    )
