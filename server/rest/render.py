"""Messages as JSON for the engine face of the REST API (jobs: ``kokaq.protocol.jobs``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from kokaq.core import MessageView
from kokaq.protocol.jobs import payload_fields, progress_value, result_fields

__all__ = ["message_json"]


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
        "progress": progress_value(view),
        **payload_fields(view, decode_json=False),
        **result_fields(view, decode_json=False),
    }
