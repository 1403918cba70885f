"""The job face, GoQuorra-compatible: submit a job, read it, list recent
ones, cancel it, count jobs per queue and status, and work the dead-letter
queue. A job is a message (DESIGN.md: one engine, two faces): its ``type``
is the ``type`` header, its JSON payload the message payload, its attempts
the deliveries; ``max_retries`` is ``max_deliveries - 1``.

A job submitted to a queue that does not exist creates it, with GoQuorra's
retry backoff ``min(2^attempt s, 1 h)``; the ``default`` namespace is
created the same way.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from kokaq.core import (
    MAX_BATCH,
    MAX_PRIORITY,
    AlreadyExists,
    BackoffPolicy,
    InvalidArgument,
    MessageSpec,
    MessageState,
    NamespaceNotFound,
    QueueNotFound,
)
from kokaq.protocol import convert as cv
from kokaq.protocol.jobs import (
    DEFAULT_NAMESPACE,
    JOB_QUEUE_CONFIG,
    STATES_OF_STATUS,
    iso,
    job_json,
    job_spec,
    job_status,
    newest_jobs,
    status_counts,
    to_ms,
)
from kokaq.protocol.v1 import kokaq_pb2 as pb
from kokaq.server.rest.deps import Caller, CallerDep
from kokaq.server.rest.stats import all_queue_stats

__all__ = ["router"]


Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")]
Key = Annotated[str, Field(min_length=1, max_length=256)]
Status = Literal["pending", "leased", "succeeded", "failed", "dead"]

router = APIRouter(prefix="/v1", tags=["jobs"])


class RetryBackoff(BaseModel):
    """Retry delays: ``min(max_seconds, base_seconds * factor^(attempt-1))``,
    less up to ``jitter`` of it."""

    model_config = ConfigDict(extra="forbid")

    base_seconds: Annotated[float, Field(ge=0, le=86_400)] = 2.0
    factor: Annotated[float, Field(ge=1, le=100)] = 2.0
    max_seconds: Annotated[float, Field(ge=0, le=30 * 86_400)] = 3_600.0
    jitter: Annotated[float, Field(ge=0, le=1)] = 0.0

    def policy(self) -> BackoffPolicy:
        if self.max_seconds < self.base_seconds:
            raise InvalidArgument("retry_backoff.max_seconds", "must be at least base_seconds")
        return BackoffPolicy(
            base_ms=round(self.base_seconds * 1000),
            factor=self.factor,
            cap_ms=round(self.max_seconds * 1000),
            jitter=self.jitter,
        )


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Key = Field(description="what the job does; workers dispatch on it")
    payload: JsonValue = Field(description="any JSON value")
    queue: Name = "default"
    namespace: Name = DEFAULT_NAMESPACE
    priority: Annotated[int, Field(ge=0, le=MAX_PRIORITY)] = 0
    delay_seconds: Annotated[float, Field(ge=0, le=365 * 86_400)] | None = None
    run_at: datetime | None = Field(None, description="ISO 8601; instead of delay_seconds")
    max_retries: Annotated[int, Field(ge=0, le=10_000)] = 3
    ttl_seconds: Annotated[float, Field(gt=0, le=365 * 86_400)] | None = None
    idempotency_key: Key | None = Field(
        None, description="a repeat within the queue's dedup window returns the first job"
    )
    fairness_key: Key | None = Field(None, description="the tenant, for fair scheduling")
    retry_backoff: RetryBackoff | None = Field(
        None, description="this job's retry delays; default: its queue's (GoQuorra's 2^n s)"
    )


class JobCreated(BaseModel):
    id: str
    status: str
    run_at: str | None
    duplicate: bool = False


class Job(BaseModel):
    id: str
    type: str | None
    namespace: str
    queue: str
    priority: int
    status: str
    attempts: int
    max_retries: int | None
    last_error: str | None
    failure_reason: str | None
    fairness_key: str | None
    idempotency_key: str | None
    created_at: str | None
    updated_at: str | None
    run_at: str | None
    expires_at: str | None
    lease_expires_at: str | None
    retry_backoff: dict[str, float] | None = None
    payload: JsonValue = None
    payload_base64: str | None = None
    progress: JsonValue = None  # as its handler last reported it (until it runs again)
    result: JsonValue = None  # what the handler returned (succeeded jobs)
    result_base64: str | None = None  # a result that is not JSON


class JobList(BaseModel):
    jobs: list[Job]


class QueueCount(BaseModel):
    namespace: str
    queue: str
    status: str
    count: int


class QueueCounts(BaseModel):
    queues: list[QueueCount]


class DeadPage(BaseModel):
    jobs: list[Job]
    next_cursor: str | None


class DeadSelection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    namespace: Name = DEFAULT_NAMESPACE
    queue: Name = "default"
    ids: list[Key] | None = Field(None, description="the jobs to act on; all when absent")


class Count(BaseModel):
    count: int


def spec_of(job: JobIn) -> MessageSpec:
    if job.delay_seconds is not None and job.run_at is not None:
        raise InvalidArgument("run_at", "give delay_seconds or run_at, not both")
    return job_spec(
        job.type,
        job.payload,
        priority=job.priority,
        delay_ms=None if job.delay_seconds is None else round(job.delay_seconds * 1000),
        run_at=None if job.run_at is None else to_ms(job.run_at, "run_at"),
        max_retries=job.max_retries,
        ttl_ms=None if job.ttl_seconds is None else max(1, round(job.ttl_seconds * 1000)),
        idempotency_key=job.idempotency_key,
        fairness_key=job.fairness_key,
        backoff=None if job.retry_backoff is None else job.retry_backoff.policy(),
    )


async def _ensure_queue(caller: Caller, namespace: str, queue: str) -> None:
    """Create what a first submit needs: the queue, and the default namespace.
    The caller may enqueue there (checked before); creating needs no more."""
    run = caller.gateway.run_authorized
    config = cv.dict_to_message(JOB_QUEUE_CONFIG.to_dict(), pb.QueueConfig())
    if namespace == DEFAULT_NAMESPACE:
        with contextlib.suppress(AlreadyExists):  # a concurrent submit made it
            await run("CreateNamespace", pb.NamespaceRequest(namespace=namespace))
    with contextlib.suppress(AlreadyExists):
        await run("CreateQueue", pb.QueueRequest(namespace=namespace, queue=queue, config=config))


async def run_making_queue(
    caller: Caller, name: str, request: Any, namespace: str, queue: str
) -> Any:
    """Run a write on a queue (an enqueue, a schedule), making the queue (and
    the default namespace) on first use."""
    caller.gateway.authorize(name, request, caller.key)
    try:
        return await caller.run(name, request)
    except (NamespaceNotFound, QueueNotFound) as missing:
        if isinstance(missing, NamespaceNotFound) and namespace != DEFAULT_NAMESPACE:
            raise
        await _ensure_queue(caller, namespace, queue)
        return await caller.run(name, request)


@router.post("/jobs", status_code=201, response_model=JobCreated, summary="Submit a job")
async def submit_job(job: JobIn, caller: CallerDep) -> Any:
    spec = cv.spec_to_proto(spec_of(job))
    request = pb.EnqueueRequest(namespace=job.namespace, queue=job.queue, message=spec)
    result = await run_making_queue(caller, "Enqueue", request, job.namespace, job.queue)
    if result.duplicate:
        first = await _find(caller, job.namespace, result.message_id)
        body = {"id": result.message_id, "duplicate": True}
        body |= {"status": job_status(first), "run_at": iso(first.visible_at)}
        return JSONResponse(body, status_code=200)
    return {"id": result.message_id, "status": "pending", "run_at": iso(result.visible_at)}


class JobBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: Annotated[list[JobIn], Field(min_length=1, max_length=MAX_BATCH)]


class JobsCreated(BaseModel):
    jobs: list[JobCreated]


@router.post(
    "/jobs/batch", status_code=201, response_model=JobsCreated, summary="Submit jobs at once"
)
async def submit_jobs(batch: JobBatch, caller: CallerDep) -> Any:
    """Up to 1,000 jobs of one namespace and queue, all or nothing: one bad
    job refuses the batch, naming it (``jobs[3].priority``). A job whose
    idempotency key was seen comes back with ``duplicate: true``."""
    first = batch.jobs[0]
    for index, job in enumerate(batch.jobs):
        if (job.namespace, job.queue) != (first.namespace, first.queue):
            raise InvalidArgument(f"jobs[{index}].queue", "a batch goes to one namespace and queue")
    specs = []
    for index, job in enumerate(batch.jobs):
        try:
            specs.append(cv.spec_to_proto(spec_of(job)))
        except InvalidArgument as error:
            raise error.at(f"jobs[{index}]") from None
    request = pb.EnqueueBatchRequest(namespace=first.namespace, queue=first.queue, messages=specs)
    try:
        results = await run_making_queue(
            caller, "EnqueueBatch", request, first.namespace, first.queue
        )
    except InvalidArgument as error:  # the engine names messages[i]
        details = error.details()
        details["field"] = "jobs" + error.field.removeprefix("messages")
        raise type(error)(**details) from None
    return {
        "jobs": [
            {
                "id": r.message_id,
                "status": _status_of(r.state),
                "run_at": iso(r.visible_at),
                "duplicate": r.duplicate,
            }
            for r in results
        ]
    }


def _status_of(state: MessageState | None) -> str:
    if state is None:
        return "gone"  # a duplicate whose first job was purged
    return "pending" if state in (MessageState.READY, MessageState.DELAYED) else str(state)


async def _find(caller: Caller, namespace: str, job_id: str) -> Any:
    request = pb.FindMessageRequest(namespace=namespace, message_id=job_id)
    return await caller.run("FindMessage", request)


NamespaceQuery = Annotated[str, Query(min_length=1, max_length=128)]


@router.get("/jobs/{job_id}", response_model=Job, summary="A job by id")
async def get_job(
    job_id: Annotated[str, Field(max_length=256)],
    caller: CallerDep,
    namespace: NamespaceQuery = DEFAULT_NAMESPACE,
) -> Any:
    return job_json(await _find(caller, namespace, job_id))


@router.post("/jobs/{job_id}/cancel", response_model=Job, summary="Cancel a waiting job")
async def cancel_job(
    job_id: Annotated[str, Field(max_length=256)],
    caller: CallerDep,
    namespace: NamespaceQuery = DEFAULT_NAMESPACE,
) -> Any:
    """A pending, failed (waiting to retry) or dead job is removed; a leased
    job is refused with 409 (it belongs to its worker until it returns)."""
    found = await _find(caller, namespace, job_id)
    ref = pb.MessageRef(namespace=namespace, queue=found.queue, message_id=job_id)
    cancelled = job_json(await caller.run("CancelMessage", ref))
    return cancelled | {"status": "cancelled"}


async def _recent(
    caller: Caller, namespace: str, queue: str | None, status: str | None, limit: int
) -> list[dict[str, Any]]:
    if queue is None:
        infos = await caller.run("ListQueues", pb.ListQueuesRequest(namespace=namespace))
        queues = [info.name for info in infos]
    else:
        queues = [queue]
    states = [cv.state_to_proto(s) for s in STATES_OF_STATUS[status]] if status else []
    found = []
    for name in queues:
        request = pb.ListMessagesRequest(
            namespace=namespace, queue=name, states=states, limit=min(1000, limit * 4)
        )
        found += await caller.run("ListMessages", request)
    return [job_json(view) for view in newest_jobs(found, status, limit)]


def _jobs_route(path: str, summary: str) -> None:
    @router.get(path, response_model=JobList, summary=summary)
    async def list_jobs(
        caller: CallerDep,
        namespace: NamespaceQuery = DEFAULT_NAMESPACE,
        queue: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
        status: Status | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> Any:
        """The newest jobs first: of one queue, or of every queue in the namespace."""
        return {"jobs": await _recent(caller, namespace, queue, status, limit)}


_jobs_route("/jobs", "Recent jobs")
_jobs_route("/recent", "Recent jobs (GoQuorra's name)")


@router.get("/queues", response_model=QueueCounts, summary="Job counts per queue and status")
async def queue_counts(
    caller: CallerDep,
    namespace: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
) -> Any:
    """Every queue of the namespace (of every namespace the key may read when
    none is given), with a count per status. Jobs waiting for a retry count
    as pending here."""
    rows = []
    for ns, queue, stats in await all_queue_stats(caller, namespace):
        rows += [
            {"namespace": ns, "queue": queue, "status": status, "count": count}
            for status, count in status_counts(stats).items()
        ]
    return {"queues": rows}


@router.get("/dlq", response_model=DeadPage, summary="Dead jobs of a queue, oldest death first")
async def list_dead_jobs(
    caller: CallerDep,
    namespace: NamespaceQuery = DEFAULT_NAMESPACE,
    queue: Annotated[str, Query(min_length=1, max_length=128)] = "default",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> Any:
    request = pb.ListDeadRequest(namespace=namespace, queue=queue, limit=limit, after=after)
    page = await caller.run("ListDead", request)
    cursor = None if page.next_cursor is None else str(page.next_cursor)
    return {"jobs": [job_json(view) for view in page.messages], "next_cursor": cursor}


def _dead_request(selection: DeadSelection) -> pb.DeadRequest:
    if selection.ids is not None and not selection.ids:
        raise InvalidArgument("ids", "name at least one job, or leave ids out for all")
    return pb.DeadRequest(
        namespace=selection.namespace, queue=selection.queue, message_ids=selection.ids or []
    )


@router.post("/dlq/redrive", response_model=Count, summary="Send dead jobs back to their queue")
async def redrive_dead_jobs(selection: DeadSelection, caller: CallerDep) -> Any:
    """With their priority, tenant and first enqueue time; attempts restart at 0."""
    return {"count": await caller.run("RedriveDead", _dead_request(selection))}


@router.post("/dlq/purge", response_model=Count, summary="Delete dead jobs")
async def purge_dead_jobs(selection: DeadSelection, caller: CallerDep) -> Any:
    return {"count": await caller.run("PurgeDead", _dead_request(selection))}
