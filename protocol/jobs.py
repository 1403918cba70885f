"""The job face of a message (DESIGN.md: one engine, two faces), shared by
the REST API, the ``kokaq jobs`` commands and the worker runtime.

A job is a message whose ``type`` header names what it does and whose
payload is JSON; its attempts are the deliveries and ``max_retries`` is
``max_deliveries - 1``. Statuses are GoQuorra's: ``pending`` (ready, or
delayed before its first try), ``leased``, ``succeeded``, ``failed``
(waiting for a retry), ``dead``.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from kokaq.core import (
    MAX_PROGRESS,
    BackoffPolicy,
    Headers,
    InvalidArgument,
    MessageSpec,
    MessageState,
    MessageView,
    QueueConfig,
    QueueStats,
    ScheduleInfo,
)

__all__ = [
    "DEFAULT_NAMESPACE",
    "JOB_QUEUE_CONFIG",
    "JOB_STATUSES",
    "STATES_OF_STATUS",
    "newest_jobs",
    "status_counts",
    "iso",
    "job_json",
    "job_payload",
    "job_result",
    "job_spec",
    "job_status",
    "payload_fields",
    "progress_text",
    "progress_value",
    "result_fields",
    "schedule_json",
    "to_ms",
]

DEFAULT_NAMESPACE = "default"
JSON = "application/json"

#: A queue made by a job's first submit: GoQuorra's backoff, 2 s, 4 s, 8 s … 1 h.
JOB_QUEUE_CONFIG = QueueConfig(backoff=BackoffPolicy(base_ms=2_000, factor=2.0, cap_ms=3_600_000))

JOB_STATUSES = ("pending", "leased", "succeeded", "failed", "dead")

#: The message states a status may be found in (``failed`` is delayed after a try).
STATES_OF_STATUS: dict[str, tuple[MessageState, ...]] = {
    "pending": (MessageState.READY, MessageState.DELAYED),
    "failed": (MessageState.DELAYED,),
    "leased": (MessageState.LEASED,),
    "succeeded": (MessageState.SUCCEEDED,),
    "dead": (MessageState.DEAD,),
}


def iso(ms: int | None) -> str | None:
    """Milliseconds since the epoch as ISO 8601 in UTC (``…Z``)."""
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_ms(moment: datetime, field: str) -> int:
    """Milliseconds since the epoch; a time without a zone is UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    ms = int(moment.timestamp() * 1000)
    if not 0 <= ms <= 2**53:
        raise InvalidArgument(field, "must be a time after 1970")
    return ms


def job_spec(
    job_type: str,
    payload: Any,
    *,
    priority: int = 0,
    delay_ms: int | None = None,
    run_at: int | None = None,
    max_retries: int = 3,
    ttl_ms: int | None = None,
    idempotency_key: str | None = None,
    fairness_key: str | None = None,
    backoff: BackoffPolicy | None = None,
) -> MessageSpec:
    """The message of a job whose payload is the JSON value ``payload``."""
    if delay_ms is not None and run_at is not None:
        raise InvalidArgument("run_at", "give a delay or run_at, not both")
    if max_retries < 0:
        raise InvalidArgument("max_retries", "must be 0 or more")
    try:
        data = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as error:
        raise InvalidArgument("payload", f"must be JSON: {error}") from None
    return MessageSpec(
        payload=data,
        priority=priority,
        headers=Headers(content_type=JSON, type=job_type),
        delay_ms=delay_ms,
        run_at=run_at,
        ttl_ms=ttl_ms,
        max_deliveries=max_retries + 1,
        dedup_key=idempotency_key,
        fairness_key=fairness_key,
        backoff=backoff,
    )


def job_result(value: Any) -> bytes | None:
    """What a handler returned, as the bytes its ack carries: bytes as they
    are, anything else as JSON (None: no result). Raises TypeError or
    ValueError for a value JSON cannot hold."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def progress_text(value: Any) -> str:
    """A progress report as the JSON text the node keeps (at most MAX_PROGRESS bytes)."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidArgument("progress", f"must be JSON: {error}") from None
    if len(text.encode()) > MAX_PROGRESS:
        raise InvalidArgument("progress", f"must be at most {MAX_PROGRESS} bytes of JSON")
    return text


def progress_value(view: MessageView) -> Any:
    """A message's progress for JSON: the value of the JSON text it keeps
    (anything else as the text itself); None if none was reported."""
    if view.progress is None:
        return None
    try:
        return json.loads(view.progress)
    except ValueError:
        return view.progress


def job_status(view: MessageView) -> str:
    state = view.state
    if state is MessageState.READY:
        return "pending"
    if state is MessageState.DELAYED:
        return "failed" if view.deliveries else "pending"
    return str(state)  # leased, succeeded, dead


def newest_jobs(views: list[MessageView], status: str | None, limit: int) -> list[MessageView]:
    """The newest ``limit`` of ``views`` (from several queues) in ``status``."""
    views = sorted(views, key=lambda view: view.created_at, reverse=True)
    return [v for v in views if status is None or job_status(v) == status][:limit]


def status_counts(stats: QueueStats) -> dict[str, int]:
    """Jobs per status of a queue; those waiting for a retry count as pending
    (the engine's counts do not split delayed jobs by attempts)."""
    return {
        "pending": stats.ready + stats.delayed,
        "leased": stats.leased,
        "succeeded": stats.succeeded,
        "dead": stats.dead,
    }


def job_payload(view: MessageView | MessageSpec) -> Any:
    """The JSON value of a JSON job; the bytes of anything else."""
    headers = view.headers
    if headers is not None and headers.content_type == JSON:
        try:
            return json.loads(view.payload)
        except ValueError:
            pass
    return view.payload


def payload_fields(view: MessageView | MessageSpec, decode_json: bool) -> dict[str, Any]:
    """A payload for JSON: the value of a JSON job (when ``decode_json``),
    else base64 and, when it is UTF-8, text — so nothing is lost or mangled."""
    if decode_json:
        value = job_payload(view)
        if not isinstance(value, bytes):
            return {"payload": value}
    out: dict[str, Any] = {"payload_base64": base64.b64encode(view.payload).decode()}
    try:
        out["payload"] = view.payload.decode()
    except UnicodeDecodeError:
        out["payload"] = None
    return out


def result_fields(view: MessageView, decode_json: bool) -> dict[str, Any]:
    """A succeeded message's result for JSON. Jobs (``decode_json``): its JSON
    value as ``result``, or ``result_base64`` when it is not JSON. Messages:
    base64 and, when it is UTF-8, text, as their payloads."""
    result = view.result
    if result is None:
        return {"result": None, "result_base64": None}
    if decode_json:
        try:
            return {"result": json.loads(result), "result_base64": None}
        except ValueError:
            return {"result": None, "result_base64": base64.b64encode(result).decode()}
    try:
        text: str | None = result.decode()
    except UnicodeDecodeError:
        text = None
    return {"result": text, "result_base64": base64.b64encode(result).decode()}


def _retry_backoff(policy: BackoffPolicy) -> dict[str, float]:
    return {
        "base_seconds": policy.base_ms / 1000,
        "factor": policy.factor,
        "max_seconds": policy.cap_ms / 1000,
        "jitter": policy.jitter,
    }


def job_json(view: MessageView) -> dict[str, Any]:
    max_retries = None if view.max_deliveries is None else max(view.max_deliveries - 1, 0)
    return {
        "id": view.id,
        "type": view.headers.type if view.headers else None,
        "namespace": view.namespace,
        "queue": view.queue,
        "priority": view.priority,
        "status": job_status(view),
        "attempts": view.deliveries,
        "max_retries": max_retries,
        "last_error": view.last_error,
        "failure_reason": None if view.failure_reason is None else str(view.failure_reason),
        "fairness_key": view.fairness_key,
        "idempotency_key": view.dedup_key,
        "created_at": iso(view.created_at),
        "updated_at": iso(view.updated_at),
        "run_at": iso(view.visible_at),
        "expires_at": iso(view.expires_at),
        "lease_expires_at": iso(view.lock_deadline),
        "retry_backoff": None if view.backoff is None else _retry_backoff(view.backoff),
        "progress": progress_value(view),
        **payload_fields(view, decode_json=True),
        **result_fields(view, decode_json=True),
    }


def schedule_json(info: ScheduleInfo) -> dict[str, Any]:
    """A schedule in the job face's terms (REST, ``kokaq schedule``)."""
    spec, template = info.spec, info.spec.template
    max_deliveries = template.max_deliveries
    return {
        "name": info.name,
        "namespace": info.namespace,
        "queue": spec.queue,
        "cron": spec.cron,
        "timezone": spec.timezone,
        "paused": spec.paused,
        "skip_if_running": spec.skip_if_running,
        "type": None if template.headers is None else template.headers.type,
        **payload_fields(template, decode_json=True),
        "priority": template.priority,
        "max_retries": None if max_deliveries is None else max_deliveries - 1,
        "ttl_seconds": None if template.ttl_ms is None else template.ttl_ms / 1000,
        "fairness_key": template.fairness_key,
        "retry_backoff": None if template.backoff is None else _retry_backoff(template.backoff),
        "next_fire_at": iso(info.next_fire_at),
        "last_fire_at": iso(info.last_fire_at),
        "last_job_id": info.last_message_id,
        "last_error": info.last_error,
        "fired": info.fired,
        "created_at": iso(info.created_at),
        "updated_at": iso(info.updated_at),
    }
