"""Schedules over REST, in the job face's terms: a job submitted at the times
of a cron expression."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from kokaq.core import MAX_PRIORITY
from kokaq.protocol import convert as cv
from kokaq.protocol.jobs import DEFAULT_NAMESPACE, iso, job_spec, schedule_json
from kokaq.protocol.v1 import kokaq_pb2 as pb
from kokaq.server.rest.deps import Caller, CallerDep
from kokaq.server.rest.jobs import (
    JobCreated,
    Key,
    Name,
    NamespaceQuery,
    RetryBackoff,
    run_making_queue,
)
from kokaq.server.rest.resources import PathName

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["jobs"])

ScheduleName = PathName


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cron: str = Field(
        min_length=1,
        max_length=256,
        description="5 fields (minute hour day month weekday), or 6 with seconds first",
    )
    timezone: str = Field("UTC", min_length=1, max_length=64, description="IANA name")
    type: Key = Field(description="the job's type; workers dispatch on it")
    payload: JsonValue = Field(description="the job's payload, any JSON value")
    # As GET shows it, so that what GET shows can be put back; only null (a
    # schedule made over gRPC with a payload that is not JSON cannot be).
    payload_base64: None = None
    queue: Name = "default"
    namespace: Name = DEFAULT_NAMESPACE
    priority: Annotated[int, Field(ge=0, le=MAX_PRIORITY)] = 0
    max_retries: Annotated[int, Field(ge=0, le=10_000)] = 3
    ttl_seconds: Annotated[float, Field(gt=0, le=365 * 86_400)] | None = None
    fairness_key: Key | None = None
    retry_backoff: RetryBackoff | None = None
    paused: bool = Field(False, description="waits without firing")
    skip_if_running: bool = Field(
        False, description="a fire while its last job still waits or runs submits nothing"
    )


class ScheduleOut(BaseModel):
    name: str
    namespace: str
    queue: str
    cron: str
    timezone: str
    paused: bool
    skip_if_running: bool
    type: str | None
    payload: JsonValue = None
    payload_base64: str | None = None  # a payload that is not JSON
    priority: int
    max_retries: int | None
    ttl_seconds: float | None
    fairness_key: str | None
    retry_backoff: dict[str, float] | None
    next_fire_at: str | None  # ISO 8601
    last_fire_at: str | None
    last_job_id: str | None  # the job its last fire submitted
    last_error: str | None  # why its last fire submitted nothing
    fired: int  # fires (and triggers) that submitted a job
    created_at: str | None
    updated_at: str | None


class ScheduleList(BaseModel):
    schedules: list[ScheduleOut]


@router.put("/schedules/{name}", response_model=ScheduleOut, summary="Create or replace a schedule")
async def put_schedule(name: ScheduleName, body: ScheduleIn, caller: CallerDep) -> Any:
    """The job is submitted at each time of ``cron`` in ``timezone`` (its queue
    is made on first use, as a submit makes it). Replacing keeps the
    schedule's history. A time missed while no node led fires once."""
    template = job_spec(
        body.type,
        body.payload,
        priority=body.priority,
        max_retries=body.max_retries,
        ttl_ms=None if body.ttl_seconds is None else max(1, round(body.ttl_seconds * 1000)),
        fairness_key=body.fairness_key,
        backoff=None if body.retry_backoff is None else body.retry_backoff.policy(),
    )
    request = pb.Schedule(
        namespace=body.namespace,
        name=name,
        queue=body.queue,
        cron=body.cron,
        timezone=body.timezone,
        template=cv.spec_to_proto(template),
        paused=body.paused,
        skip_if_running=body.skip_if_running,
    )
    info = await run_making_queue(caller, "PutSchedule", request, body.namespace, body.queue)
    return schedule_json(info)


@router.get("/schedules", response_model=ScheduleList, summary="The schedules of a namespace")
async def list_schedules(caller: CallerDep, namespace: NamespaceQuery = DEFAULT_NAMESPACE) -> Any:
    infos = await caller.run("ListSchedules", pb.ListSchedulesRequest(namespace=namespace))
    return {"schedules": [schedule_json(info) for info in infos]}


@router.get("/schedules/{name}", response_model=ScheduleOut, summary="A schedule")
async def get_schedule(
    name: ScheduleName, caller: CallerDep, namespace: NamespaceQuery = DEFAULT_NAMESPACE
) -> Any:
    return schedule_json(await _run(caller, "GetSchedule", namespace, name))


@router.delete("/schedules/{name}", status_code=204, summary="Delete a schedule")
async def delete_schedule(
    name: ScheduleName, caller: CallerDep, namespace: NamespaceQuery = DEFAULT_NAMESPACE
) -> Response:
    await _run(caller, "DeleteSchedule", namespace, name)
    return Response(status_code=204)


@router.post("/schedules/{name}/pause", response_model=ScheduleOut, summary="Pause a schedule")
async def pause_schedule(
    name: ScheduleName, caller: CallerDep, namespace: NamespaceQuery = DEFAULT_NAMESPACE
) -> Any:
    """It fires nothing until resumed (pausing a paused one changes nothing)."""
    return schedule_json(await _run(caller, "PauseSchedule", namespace, name))


@router.post("/schedules/{name}/resume", response_model=ScheduleOut, summary="Resume a schedule")
async def resume_schedule(
    name: ScheduleName, caller: CallerDep, namespace: NamespaceQuery = DEFAULT_NAMESPACE
) -> Any:
    """It fires again from the next time to come: times passed while paused are
    skipped (``next_fire_at`` may show such a time until the leader skips it,
    at once)."""
    return schedule_json(await _run(caller, "ResumeSchedule", namespace, name))


@router.post(
    "/schedules/{name}/trigger",
    status_code=201,
    response_model=JobCreated,
    summary="Submit the schedule's job now",
)
async def trigger_schedule(
    name: ScheduleName, caller: CallerDep, namespace: NamespaceQuery = DEFAULT_NAMESPACE
) -> Any:
    """Besides its fires, paused or not; its fire times do not move."""
    result = await _run(caller, "TriggerSchedule", namespace, name)
    return {"id": result.message_id, "status": "pending", "run_at": iso(result.visible_at)}


async def _run(caller: Caller, operation: str, namespace: str, name: str) -> Any:
    return await caller.run(operation, pb.ScheduleRequest(namespace=namespace, name=name))
