"""Turning an enqueue request into a ``Message``: every check, no mutation."""

from __future__ import annotations

from kokaq.core.config import DAY, BackoffPolicy, QueueConfig
from kokaq.core.errors import InvalidArgument, PayloadTooLarge
from kokaq.core.message import Headers, Message
from kokaq.core.validation import check_id, check_int, check_key

__all__ = ["MAX_DELAY_MS", "MAX_TTL_MS", "admit"]

#: The furthest ahead a message may be scheduled, and the longest TTL.
MAX_DELAY_MS = 366 * DAY
MAX_TTL_MS = 366 * DAY


def admit(
    config: QueueConfig,
    message_id: str,
    now: int,
    seq: int,
    payload: bytes,
    priority: int = 0,
    headers: Headers | None = None,
    delay_ms: int | None = None,
    run_at: int | None = None,
    ttl_ms: int | None = None,
    expires_at: int | None = None,
    max_deliveries: int | None = None,
    dedup_key: str | None = None,
    fairness_key: str | None = None,
    cost: int = 1,
    backoff: BackoffPolicy | None = None,
) -> Message:
    """Check one message against ``config`` and build it; raise on the first broken rule."""
    check_id("message_id", message_id)
    if type(payload) is not bytes:
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise InvalidArgument("payload", "must be bytes")
        payload = bytes(payload)
    if len(payload) > config.max_payload_bytes:
        raise PayloadTooLarge("payload", len(payload), config.max_payload_bytes)
    if type(priority) is not int or not config.min_priority <= priority <= config.max_priority:
        check_int("priority", priority, config.min_priority, config.max_priority)
    if headers is not None:
        if not isinstance(headers, Headers):
            raise InvalidArgument("headers", "must be Headers")
        headers.validate("headers")

    visible_at = now
    if delay_ms is not None:
        if run_at is not None:
            raise InvalidArgument("run_at", "give delay_ms or run_at, not both")
        visible_at = now + check_int("delay_ms", delay_ms, 0, MAX_DELAY_MS)
    elif run_at is not None:
        visible_at = max(now, check_int("run_at", run_at, 0, now + MAX_DELAY_MS))

    if ttl_ms is not None:
        if expires_at is not None:
            raise InvalidArgument("expires_at", "give ttl_ms or expires_at, not both")
        expires_at = now + check_int("ttl_ms", ttl_ms, 1, MAX_TTL_MS)
    elif expires_at is not None:
        check_int("expires_at", expires_at, now + 1, now + MAX_TTL_MS)
    elif config.default_ttl_ms is not None:
        expires_at = now + config.default_ttl_ms
    if expires_at is not None and expires_at <= visible_at:
        raise InvalidArgument("expires_at", "the message would expire before it is visible")

    if max_deliveries is not None:
        check_int("max_deliveries", max_deliveries, 0, 1_000_000)
    if dedup_key is not None:
        check_key("dedup_key", dedup_key, 256)
    if fairness_key is not None:
        check_key("fairness_key", fairness_key, 128)
    if type(cost) is not int or cost != 1:
        check_int("cost", cost, 1, 1_000_000)
    if backoff is not None:
        if not isinstance(backoff, BackoffPolicy):
            raise InvalidArgument("backoff", "must be a BackoffPolicy")
        backoff.validate("backoff")
    return Message(
        message_id,
        payload,
        priority,
        seq,
        now,
        visible_at,
        expires_at,
        headers,
        fairness_key,
        cost,
        max_deliveries,
        dedup_key,
        backoff,
    )
