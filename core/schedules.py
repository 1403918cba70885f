"""Schedules: a job enqueued into a queue at the times of a cron expression.

The engine keeps the schedules and fires them, but it reads no clock and
parses no cron: whoever proposes a command computes the fire times (the
node's ``server/schedules.py``) and the command carries them. So every
replica fires the same schedule at the same time into the same message.
A fire is applied once: only the fire time the schedule waits for enqueues,
and the message's dedup key (the schedule and the fire time) guards the rest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kokaq.core.admission import admit
from kokaq.core.engine_core import MAX_TIME, EngineCore
from kokaq.core.errors import InvalidArgument, KokaqError, ScheduleNotFound
from kokaq.core.message import MessageSpec, MessageState
from kokaq.core.results import EnqueueResult
from kokaq.core.validation import check_bool, check_int, check_name, check_text

__all__ = ["MAX_CRON", "Schedule", "ScheduleInfo", "ScheduleOps", "ScheduleSpec"]

MAX_CRON = 256  # bytes of a cron expression
MAX_TIMEZONE = 64  # bytes of an IANA time zone name
#: Template fields a schedule sets itself: when the job runs, and its dedup key.
_SET_AT_FIRE = ("delay_ms", "run_at", "expires_at", "dedup_key")
_UNFINISHED = frozenset({MessageState.READY, MessageState.DELAYED, MessageState.LEASED})


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """What a schedule does: enqueue ``template`` into ``queue`` (of its
    namespace) at each time ``cron`` names in ``timezone``; nothing while
    paused, nor (``skip_if_running``) while the last job it enqueued is still
    waiting or running: jobs do not pile up while the workers are down."""

    queue: str
    cron: str
    template: MessageSpec
    timezone: str = "UTC"
    paused: bool = False
    skip_if_running: bool = False

    def validate(self) -> None:
        check_name("queue", self.queue)
        if not check_text("cron", self.cron, MAX_CRON).strip():
            raise InvalidArgument("cron", "give a cron expression")
        if not check_text("timezone", self.timezone, MAX_TIMEZONE):
            raise InvalidArgument("timezone", "give a time zone name (UTC, Europe/Paris, …)")
        check_bool("paused", self.paused)
        check_bool("skip_if_running", self.skip_if_running)
        if not isinstance(self.template, MessageSpec):
            raise InvalidArgument("template", "must be a MessageSpec")
        for name in _SET_AT_FIRE:
            if getattr(self.template, name) is not None:
                raise InvalidArgument(f"template.{name}", "a schedule sets it at each fire")


class Schedule:
    """The engine's record of a schedule (internal and mutable; callers get infos)."""

    __slots__ = (
        "created_at",
        "fired",
        "last_error",
        "last_fire_at",
        "last_message_id",
        "name",
        "next_fire_at",
        "resumed_at",
        "spec",
        "updated_at",
    )

    def __init__(self, name: str, spec: ScheduleSpec, next_fire_at: int, now: int) -> None:
        self.name = name
        self.spec = spec
        self.next_fire_at = next_fire_at
        self.created_at = self.updated_at = now
        self.last_fire_at: int | None = None
        self.last_message_id: str | None = None
        self.last_error: str | None = None
        self.fired = 0
        # When it was last resumed: a fire time it passed while paused is not fired late.
        self.resumed_at: int | None = None


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    namespace: str
    name: str
    spec: ScheduleSpec
    next_fire_at: int  # the fire the schedule waits for (paused: it waits, not fires)
    last_fire_at: int | None
    last_message_id: str | None  # the message its last fire enqueued
    last_error: str | None  # why its last fire enqueued nothing (None: it did)
    fired: int  # fires that enqueued a message
    created_at: int
    updated_at: int


class ScheduleOps(EngineCore):
    if TYPE_CHECKING:
        enqueue: Callable[..., EnqueueResult]  # the Engine's

    def put_schedule(
        self, namespace: str, name: str, spec: ScheduleSpec, *, next_fire_at: int, now: int
    ) -> ScheduleInfo:
        """Create the schedule, or replace what it does (its history stays).
        Its queue must exist, and its template must be a message that queue
        takes. ``next_fire_at``: its first fire time, computed by the caller."""
        now = self._clock(now)
        ns = self._namespace(namespace)
        check_name("name", name)
        if not isinstance(spec, ScheduleSpec):
            raise InvalidArgument("spec", "must be a ScheduleSpec")
        spec.validate()
        check_int("next_fire_at", next_fire_at, 0, MAX_TIME)
        queue = self._queue(namespace, spec.queue)
        template = {f.name: getattr(spec.template, f.name) for f in dataclasses.fields(MessageSpec)}
        try:  # what the queue would refuse at every fire, refused now
            admit(queue.config, "check", now, 0, **template)
        except InvalidArgument as error:
            raise error.at("template") from None
        schedule = ns.schedules.get(name)
        if schedule is None:
            schedule = ns.schedules[name] = Schedule(name, spec, next_fire_at, now)
        else:
            schedule.spec, schedule.next_fire_at, schedule.updated_at = spec, next_fire_at, now
        return _info(namespace, schedule)

    def get_schedule(self, namespace: str, name: str) -> ScheduleInfo:
        return _info(namespace, self._schedule(namespace, name))

    def list_schedules(self, namespace: str) -> list[ScheduleInfo]:
        schedules = self._namespace(namespace).schedules
        return [_info(namespace, schedules[name]) for name in sorted(schedules)]

    def pause_schedule(self, namespace: str, name: str, *, now: int) -> ScheduleInfo:
        """Fire nothing until ``resume_schedule`` (pausing a paused one changes nothing)."""
        now = self._clock(now)
        schedule = self._schedule(namespace, name)
        if not schedule.spec.paused:
            schedule.spec = dataclasses.replace(schedule.spec, paused=True)
            schedule.updated_at = now
        return _info(namespace, schedule)

    def resume_schedule(self, namespace: str, name: str, *, now: int) -> ScheduleInfo:
        """Fire again from the next time to come: a time passed while paused is
        skipped, not fired late (resuming a running one changes nothing)."""
        now = self._clock(now)
        schedule = self._schedule(namespace, name)
        if schedule.spec.paused:
            schedule.spec = dataclasses.replace(schedule.spec, paused=False)
            schedule.resumed_at = schedule.updated_at = now
        return _info(namespace, schedule)

    def delete_schedule(self, namespace: str, name: str, *, now: int) -> None:
        self._clock(now)
        self._schedule(namespace, name)
        del self._namespaces[namespace].schedules[name]

    def due_schedules(self, now: int) -> list[ScheduleInfo]:
        """The running schedules whose next fire is due by ``now`` (a read)."""
        return [
            _info(ns.name, schedule)
            for ns in self._namespaces.values()
            for schedule in ns.schedules.values()
            if schedule.next_fire_at <= now and not schedule.spec.paused
        ]

    def fire_schedule(
        self,
        namespace: str,
        name: str,
        *,
        fire_at: int,
        next_fire_at: int,
        message_id: str,
        now: int,
    ) -> EnqueueResult | None:
        """Enqueue the schedule's job for ``fire_at`` and wait for ``next_fire_at``.
        Only the fire the schedule waits for happens: another (already fired,
        the schedule changed or paused since it was proposed) changes nothing
        and returns None. A job its queue refuses (gone, full), or one the
        last job would overlap (``skip_if_running``), is skipped: why is kept
        in ``last_error`` and the schedule moves on."""
        now = self._clock(now)
        schedule = self._schedule(namespace, name)
        check_int("fire_at", fire_at, 0, MAX_TIME)
        check_int("next_fire_at", next_fire_at, fire_at + 1, MAX_TIME)
        if schedule.spec.paused or fire_at != schedule.next_fire_at:
            return None
        schedule.next_fire_at = next_fire_at
        if schedule.resumed_at is not None and fire_at < schedule.resumed_at:
            return None  # a time passed while paused: skipped, and on to the next
        schedule.last_fire_at = fire_at
        if schedule.spec.skip_if_running:
            running = self._last_job_running(namespace, schedule)
            if running is not None:
                schedule.last_error = f"skipped: its last job {running} has not finished"
                return None
        try:
            return self._enqueue_template(namespace, schedule, message_id, f"{fire_at}", now)
        except KokaqError as error:
            schedule.last_error = error.message
            return None

    def trigger_schedule(
        self, namespace: str, name: str, *, message_id: str, now: int
    ) -> EnqueueResult:
        """Enqueue the schedule's job now, besides its fires (paused or not).
        Errors are raised, and its fire times do not move."""
        now = self._clock(now)
        schedule = self._schedule(namespace, name)
        return self._enqueue_template(namespace, schedule, message_id, f"now-{now}", now)

    # -- helpers -------------------------------------------------------------------------

    def _schedule(self, namespace: str, name: str) -> Schedule:
        try:
            return self._namespaces[namespace].schedules[name]
        except (KeyError, TypeError):
            self._namespace(namespace)
            check_name("name", name)
            raise ScheduleNotFound(namespace, name) from None

    def _last_job_running(self, namespace: str, schedule: Schedule) -> str | None:
        """The last job the schedule enqueued, if it still waits or runs."""
        queue = self._namespaces[namespace].queues.get(schedule.spec.queue)
        last = schedule.last_message_id
        message = None if queue is None or last is None else queue.messages.get(last)
        return last if message is not None and message.state in _UNFINISHED else None

    def _enqueue_template(
        self, namespace: str, schedule: Schedule, message_id: str, when: str, now: int
    ) -> EnqueueResult:
        template = schedule.spec.template
        result = self.enqueue(
            namespace,
            schedule.spec.queue,
            template.payload,
            message_id=message_id,
            now=now,
            priority=template.priority,
            headers=template.headers,
            ttl_ms=template.ttl_ms,
            max_deliveries=template.max_deliveries,
            dedup_key=f"schedule:{schedule.name}:{when}",
            fairness_key=template.fairness_key,
            cost=template.cost,
            backoff=template.backoff,
        )
        schedule.last_error = None
        schedule.last_message_id = result.message_id
        schedule.fired += 1
        return result


def _info(namespace: str, s: Schedule) -> ScheduleInfo:
    return ScheduleInfo(
        namespace,
        s.name,
        s.spec,
        s.next_fire_at,
        s.last_fire_at,
        s.last_message_id,
        s.last_error,
        s.fired,
        s.created_at,
        s.updated_at,
    )
