"""Namespace and queue configuration: frozen value objects with ``validate()``.

Example::

    config = QueueConfig(visibility_timeout_ms=60_000, max_deliveries=5,
                         backoff=BackoffPolicy(base_ms=500, jitter=0.2))
    config.validate()          # raises ConfigError("backoff.jitter", ...) if broken

All durations are integer milliseconds. ``to_dict`` / ``from_dict`` give the
plain form used by snapshots and the wire; ``from_dict`` rejects unknown keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kokaq.core.errors import ConfigError
from kokaq.core.validation import (
    MAX_PRIORITY,
    check_bool,
    check_int,
    check_optional_int,
    check_text,
)

__all__ = [
    "MAX_PAYLOAD_LIMIT",
    "BackoffPolicy",
    "NamespaceConfig",
    "QueueConfig",
    "RetentionPolicy",
]

SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

#: The largest ``max_payload_bytes`` a queue may be configured with.
MAX_PAYLOAD_LIMIT = 64 * 1024 * 1024

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Retry delay after a nack: ``min(cap, base * factor**(attempt-1))``, less jitter.

    The jitter takes up to ``jitter`` (a fraction 0-1) off the delay, by an
    amount derived from the message id and the attempt, so every replica
    computes the same delay.
    """

    base_ms: int = 1 * SECOND
    factor: float = 2.0
    cap_ms: int = 1 * HOUR
    jitter: float = 0.0

    def validate(self, prefix: str = "backoff") -> None:
        check_int(f"{prefix}.base_ms", self.base_ms, 0, DAY, ConfigError)
        if type(self.factor) not in (int, float) or not 1.0 <= self.factor <= 100.0:
            raise ConfigError(f"{prefix}.factor", "must be a number from 1 to 100")
        check_int(f"{prefix}.cap_ms", self.cap_ms, 0, 30 * DAY, ConfigError)
        if self.cap_ms < self.base_ms:
            raise ConfigError(f"{prefix}.cap_ms", "must be at least base_ms")
        if type(self.jitter) not in (int, float) or not 0.0 <= self.jitter <= 1.0:
            raise ConfigError(f"{prefix}.jitter", "must be a fraction from 0 to 1")


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long succeeded messages stay readable: oldest purged first."""

    period_ms: int = 1 * HOUR
    max_count: int = 10_000

    def validate(self, prefix: str = "retention") -> None:
        check_int(f"{prefix}.period_ms", self.period_ms, 0, 30 * DAY, ConfigError)
        check_int(f"{prefix}.max_count", self.max_count, 0, 1_000_000, ConfigError)


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """A queue's behaviour. Defaults suit a job queue; see the field comments."""

    visibility_timeout_ms: int = 30 * SECOND  # lease length, 1 s - 12 h
    max_deliveries: int = 10  # 0 = unlimited
    dead_letter: bool = True  # False: failed / expired messages are dropped
    default_ttl_ms: int | None = None  # None = messages never expire
    min_priority: int = 0
    max_priority: int = MAX_PRIORITY
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    dedup_window_ms: int = 5 * MINUTE
    max_length: int | None = None  # ready + delayed + leased; None = unbounded
    max_payload_bytes: int = 1024 * 1024

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the first broken field and its rule."""
        check_int(
            "visibility_timeout_ms", self.visibility_timeout_ms, SECOND, 12 * HOUR, ConfigError
        )
        check_int("max_deliveries", self.max_deliveries, 0, 1_000_000, ConfigError)
        check_bool("dead_letter", self.dead_letter, ConfigError)
        check_optional_int("default_ttl_ms", self.default_ttl_ms, 1, 366 * DAY, ConfigError)
        check_int("min_priority", self.min_priority, 0, MAX_PRIORITY, ConfigError)
        check_int("max_priority", self.max_priority, 0, MAX_PRIORITY, ConfigError)
        if self.min_priority > self.max_priority:
            raise ConfigError("min_priority", "must not exceed max_priority")
        if not isinstance(self.backoff, BackoffPolicy):
            raise ConfigError("backoff", "must be a BackoffPolicy")
        self.backoff.validate()
        if not isinstance(self.retention, RetentionPolicy):
            raise ConfigError("retention", "must be a RetentionPolicy")
        self.retention.validate()
        check_int("dedup_window_ms", self.dedup_window_ms, 0, 7 * DAY, ConfigError)
        check_optional_int("max_length", self.max_length, 1, 10**9, ConfigError)
        check_int("max_payload_bytes", self.max_payload_bytes, 1, MAX_PAYLOAD_LIMIT, ConfigError)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QueueConfig:
        values = dict(data)
        if "backoff" in values:
            values["backoff"] = _from_dict(BackoffPolicy, values["backoff"], "backoff")
        if "retention" in values:
            values["retention"] = _from_dict(RetentionPolicy, values["retention"], "retention")
        return _from_dict(cls, values, "")


@dataclass(frozen=True, slots=True)
class NamespaceConfig:
    """A namespace: a group of queues, typically one per team or environment."""

    description: str = ""
    max_queues: int | None = None  # None = unbounded

    def validate(self) -> None:
        check_text("description", self.description, 1024, ConfigError)
        check_optional_int("max_queues", self.max_queues, 1, 100_000, ConfigError)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NamespaceConfig:
        return _from_dict(cls, data, "")


def _from_dict(cls: type[_T], data: object, prefix: str) -> _T:
    if not isinstance(data, dict):
        raise ConfigError(prefix or cls.__name__, "must be a mapping")
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in known:
            raise ConfigError(f"{prefix}.{key}" if prefix else str(key), "is not a known setting")
    return cls(**data)
