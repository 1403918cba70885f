"""Engine values as JSON: times as ISO 8601 (UTC), messages and jobs."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

from kokaq.core import BackoffPolicy, InvalidArgument, MessageState, MessageView

__all__ = ["JOB_STATUSES", "iso", "job_json", "job_status", "message_json", "to_ms"]

#: GoQuorra's job statuses. ``failed`` is a job waiting for its retry.
JOB_STATUSES = ("pending", "leased", "succeeded", "failed", "dead")


def iso(ms: int | None) -> str | None:
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


def job_status(view: MessageView) -> str:
    state = view.state
    if state is MessageState.READY:
        return "pending"
    if state is MessageState.DELAYED:
        return "failed" if view.deliveries else "pending"
    return str(state)  # leased, succeeded, dead


def _payload(view: MessageView, decode_json: bool) -> dict[str, Any]:
    """A JSON payload as its value (for jobs); anything else as base64, and
    as text when it is UTF-8, so no payload is ever lost or mangled."""
    headers = view.headers
    if decode_json and headers is not None and headers.content_type == "application/json":
        try:
            return {"payload": json.loads(view.payload)}
        except ValueError:
            pass
    out: dict[str, Any] = {"payload_base64": base64.b64encode(view.payload).decode()}
    try:
        out["payload"] = view.payload.decode()
    except UnicodeDecodeError:
        out["payload"] = None
    return out


def _headers(view: MessageView) -> dict[str, Any] | None:
    h = view.headers
    if h is None:
        return None
    return {
        "content_type": h.content_type,
        "correlation_id": h.correlation_id,
        "type": h.type,
        "source": h.source,
        "user": dict(h.user),
    }


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
        **_payload(view, decode_json=True),
    }


def message_json(view: MessageView) -> dict[str, Any]:
    return {
        "id": view.id,
        "namespace": view.namespace,
        "queue": view.queue,
        "state": str(view.state),
        "priority": view.priority,
        "headers": _headers(view),
        "fairness_key": view.fairness_key,
        "cost": view.cost,
        "created_at": view.created_at,
        "updated_at": view.updated_at,
        "visible_at": view.visible_at,
        "expires_at": view.expires_at,
        "deliveries": view.deliveries,
        "max_deliveries": view.max_deliveries,
        "dedup_key": view.dedup_key,
        "lock_id": view.lock_id,
        "lock_deadline": view.lock_deadline,
        "last_error": view.last_error,
        "failure_reason": None if view.failure_reason is None else str(view.failure_reason),
        "backoff": None if view.backoff is None else dataclasses.asdict(view.backoff),
        **_payload(view, decode_json=False),
    }
