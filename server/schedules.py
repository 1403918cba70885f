"""Schedules on a node: cron expressions read here, fires proposed by the leader.

The engine keeps the schedules but reads no clock and parses no cron
(``core/schedules.py``). So a ``PutSchedule`` is stamped with its first
fire time before it goes to the log, and the leader proposes a
``FireSchedule`` for each due schedule with the fire time the schedule waits
for and the one after. A fire time missed while no leader ran (the cluster
was down) fires once when one is back, not once per time missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from kokaq.core import InvalidArgument, KokaqError
from kokaq.protocol.v1 import kokaq_pb2 as pb
from kokaq.server.committer import wall_clock_ms

if TYPE_CHECKING:  # both need the operation table, which needs stamp_first_fire
    from kokaq.server.gateway import Gateway
    from kokaq.server.replication import ReplicatedEngine

__all__ = ["fire_due_schedules", "next_fire", "stamp_first_fire"]

log = logging.getLogger("kokaq.server")

#: How often the leader looks for due schedules: a fire's lateness, at most.
_LOOK_EVERY = 0.1


def next_fire(cron: str, timezone: str, after_ms: int) -> int:
    """The first time after ``after_ms`` that ``cron`` names, read in
    ``timezone`` (milliseconds). Raises InvalidArgument naming the field."""
    try:
        zone = UTC if timezone in ("", "UTC") else ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument("timezone", f"unknown time zone {timezone!r}") from None
    start = datetime.fromtimestamp(after_ms / 1000, tz=zone)
    try:
        fire = next(CronSim(cron, start))
    except CronSimError as error:
        raise InvalidArgument("cron", str(error) or "not a cron expression") from None
    except StopIteration:
        raise InvalidArgument("cron", "names no time to come") from None
    return int(fire.timestamp() * 1000)


def stamp_first_fire(request: pb.Schedule) -> pb.Schedule:
    """A PutSchedule as it goes to the log: with its first fire time."""
    stamped = pb.Schedule()
    stamped.CopyFrom(request)
    stamped.next_fire_at = next_fire(request.cron, request.timezone, wall_clock_ms())
    return stamped


async def fire_due_schedules(raft: ReplicatedEngine, gateway: Gateway) -> None:
    """On the leader, forever: propose the fire of every due schedule."""
    broken: set[tuple[str, str, str]] = set()  # schedules whose cron no longer reads
    while True:
        await asyncio.sleep(_LOOK_EVERY)
        if not raft.is_leader():
            continue
        now = wall_clock_ms()
        with raft.lock:
            due = raft.engine.due_schedules(now)
        for schedule in due:
            spec = schedule.spec
            try:
                after = next_fire(spec.cron, spec.timezone, max(now, schedule.next_fire_at))
            except InvalidArgument as error:
                where = (schedule.namespace, schedule.name, spec.cron)
                if where not in broken:
                    broken.add(where)
                    log.warning("schedule %s/%s: %s", schedule.namespace, schedule.name, error)
                continue
            request = pb.FireScheduleRequest(
                namespace=schedule.namespace,
                name=schedule.name,
                fire_at=schedule.next_fire_at,
                next_fire_at=after,
            )
            with contextlib.suppress(KokaqError):  # not the leader any more, say: next look
                await gateway.run_authorized("FireSchedule", request)
