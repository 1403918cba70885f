"""Messages: what callers send (``MessageSpec``), keep (``Message``) and see (``MessageView``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from kokaq.core.config import BackoffPolicy
from kokaq.core.errors import InvalidArgument
from kokaq.core.validation import check_key, check_text

__all__ = [
    "FailureReason",
    "Headers",
    "Message",
    "MessageSpec",
    "MessageState",
    "MessageView",
]


class MessageState(StrEnum):
    READY = "ready"  # waiting to be dequeued
    DELAYED = "delayed"  # waiting for its visible-at time
    LEASED = "leased"  # held by a consumer under a lock id
    SUCCEEDED = "succeeded"  # acked, kept for the retention period
    DEAD = "dead"  # in the dead-letter queue


class FailureReason(StrEnum):
    """Why a delivery failed (kokaq protocol's ``FailureReason``)."""

    UNSPECIFIED = "unspecified"
    HANDLER_TIMEOUT = "handler_timeout"
    MAX_RETRY_EXCEEDED = "max_retry_exceeded"
    INVALID_PAYLOAD = "invalid_payload"
    PROCESSING_ERROR = "processing_error"
    EXPIRED = "expired"
    POISON_MESSAGE = "poison_message"
    UNAUTHORIZED_HANDLER = "unauthorized_handler"
    QUEUE_NOT_FOUND = "queue_not_found"
    DROPPED_DUE_TO_SHUTDOWN = "dropped_due_to_shutdown"
    VISIBILITY_TIMEOUT_EXCEEDED = "visibility_timeout_exceeded"


MAX_USER_HEADERS = 32
MAX_PROGRESS = 4096  # bytes of UTF-8 in a progress report
_STANDARD_HEADERS = ("content_type", "correlation_id", "type", "source")


@dataclass(frozen=True, slots=True)
class Headers:
    """Standard headers plus a bounded map of user headers (32 entries at most)."""

    content_type: str | None = None
    correlation_id: str | None = None
    type: str | None = None  # the job type workers dispatch on
    source: str | None = None
    user: Mapping[str, str] = field(default_factory=dict)

    def validate(self, prefix: str = "headers") -> None:
        for name in _STANDARD_HEADERS:
            value = getattr(self, name)
            if value is not None:
                check_key(f"{prefix}.{name}", value, 256)
        if not isinstance(self.user, Mapping) or len(self.user) > MAX_USER_HEADERS:
            raise InvalidArgument(f"{prefix}.user", f"must map at most {MAX_USER_HEADERS} names")
        for key, value in self.user.items():
            check_key(f"{prefix}.user", key, 128)
            check_text(f"{prefix}.user[{key}]", value, 1024)

    def to_list(self) -> list[Any]:
        return [self.content_type, self.correlation_id, self.type, self.source, dict(self.user)]

    @classmethod
    def from_list(cls, data: list[Any]) -> Headers:
        return cls(data[0], data[1], data[2], data[3], dict(data[4]))


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageSpec:
    """One message to enqueue. Only ``payload`` is required.

    Give ``delay_ms`` or ``run_at`` (not both), ``ttl_ms`` or ``expires_at``
    (not both). ``max_deliveries`` and ``backoff`` (retry delays after a
    nack) override the queue's settings for this message. ``fairness_key``
    and ``cost`` feed the scheduler.
    """

    payload: bytes
    priority: int = 0
    headers: Headers | None = None
    delay_ms: int | None = None
    run_at: int | None = None
    ttl_ms: int | None = None
    expires_at: int | None = None
    max_deliveries: int | None = None
    dedup_key: str | None = None
    fairness_key: str | None = None
    cost: int = 1
    backoff: BackoffPolicy | None = None


class Message:
    """The engine's record of one message. Internal and mutable: callers get views."""

    __slots__ = (
        "id",
        "payload",
        "priority",
        "seq",
        "headers",
        "fairness_key",
        "cost",
        "created_at",
        "updated_at",
        "visible_at",
        "expires_at",
        "deliveries",
        "max_deliveries",
        "dedup_key",
        "state",
        "lock_id",
        "lock_deadline",
        "lease_ms",
        "last_error",
        "failure_reason",
        "backoff",
        "result",  # what the ack that settled it carried, if anything
        "progress",  # what the holder of its last lease reported, if anything
        # (lock id, by a nack?) of the last lease a nack or a release gave
        # back, so that a retry of that settle is answered, not refused.
        "returned",
        # The index entry that currently holds this message: the scheduler's
        # while ready, a timer's while delayed or leased. Entries that are not
        # this one are stale and skipped (lazy deletion).
        "entry",
        "ttl_entry",
    )

    id: str
    payload: bytes
    priority: int
    seq: int
    headers: Headers | None
    fairness_key: str | None
    cost: int
    created_at: int
    updated_at: int
    visible_at: int
    expires_at: int | None
    deliveries: int
    max_deliveries: int | None
    dedup_key: str | None
    state: MessageState
    lock_id: str | None
    lock_deadline: int | None
    lease_ms: int
    last_error: str | None
    failure_reason: FailureReason | None
    backoff: BackoffPolicy | None
    result: bytes | None
    progress: str | None
    returned: tuple[str, bool] | None
    entry: object
    ttl_entry: object

    def __init__(
        self,
        message_id: str,
        payload: bytes,
        priority: int,
        seq: int,
        now: int,
        visible_at: int,
        expires_at: int | None,
        headers: Headers | None = None,
        fairness_key: str | None = None,
        cost: int = 1,
        max_deliveries: int | None = None,
        dedup_key: str | None = None,
        backoff: BackoffPolicy | None = None,
    ) -> None:
        self.id = message_id
        self.payload = payload
        self.priority = priority
        self.seq = seq
        self.headers = headers
        self.fairness_key = fairness_key
        self.cost = cost
        self.created_at = now
        self.updated_at = now
        self.visible_at = visible_at
        self.expires_at = expires_at
        self.deliveries = 0
        self.max_deliveries = max_deliveries
        self.dedup_key = dedup_key
        self.state = MessageState.READY
        self.lock_id = None
        self.lock_deadline = None
        self.lease_ms = 0
        self.last_error = None
        self.failure_reason = None
        self.backoff = backoff
        self.result = None
        self.progress = None
        self.returned = None
        self.entry = None
        self.ttl_entry = None

    def __repr__(self) -> str:
        return f"<Message {self.id} {self.state} priority={self.priority} seq={self.seq}>"


class MessageView(NamedTuple):
    """A read-only copy of a message, as every read and dequeue returns it."""

    id: str
    namespace: str
    queue: str
    state: MessageState
    payload: bytes
    priority: int
    headers: Headers | None
    fairness_key: str | None
    cost: int
    created_at: int
    updated_at: int
    visible_at: int
    expires_at: int | None
    deliveries: int
    max_deliveries: int | None
    dedup_key: str | None
    lock_id: str | None
    lock_deadline: int | None
    last_error: str | None
    failure_reason: FailureReason | None
    backoff: BackoffPolicy | None = None  # this message's own retry delays
    result: bytes | None = None  # a succeeded message's, as its ack gave it
    progress: str | None = None  # as the holder of its last lease reported it
