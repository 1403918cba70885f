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
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from kokaq.core.errors import ConfigError
from kokaq.core.validation import (
    MAX_PRIORITY,
    check_bool,
    check_int,
    check_key,
    check_optional_int,
    check_text,
)

__all__ = [
    "MAX_KEY_WEIGHTS",
    "MAX_PAYLOAD_LIMIT",
    "MAX_WEIGHT",
    "BackoffPolicy",
    "Band",
    "NamespaceConfig",
    "QueueConfig",
    "RetentionPolicy",
    "RetryPosition",
    "SchedulingPolicy",
]

SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

#: The largest ``max_payload_bytes`` a queue may be configured with.
MAX_PAYLOAD_LIMIT = 64 * 1024 * 1024
#: Scheduling weights are integers from 1 to MAX_WEIGHT.
MAX_WEIGHT = 1_000_000
#: The most fairness keys a queue may name in ``key_weights``.
MAX_KEY_WEIGHTS = 10_000
MAX_BANDS = 64

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
class Band:
    """The priorities ``min_priority``-``max_priority`` (inclusive), served with ``weight``."""

    min_priority: int
    max_priority: int
    weight: int = 1


class RetryPosition(StrEnum):
    """Where a message that comes back (retry, lease expiry, release) waits
    among messages of equal priority: ahead of them (it keeps its original
    place) or behind them (as if enqueued again)."""

    AHEAD = "ahead"
    BEHIND = "behind"


@dataclass(frozen=True, slots=True)
class SchedulingPolicy:
    """How a queue chooses among its ready messages (DESIGN.md section 2).

    * ``bands``: priority ranges served by weighted fair queueing, listed from
      the lowest priorities up; together they must cover the queue's
      ``min_priority``-``max_priority`` with no gap or overlap. Empty: one band,
      that is strict priority.
    * ``key_weights`` / ``default_key_weight``: inside a band, fairness keys
      share by weight (messages without a key form one flow of their own).
    * ``aging_interval_ms``: inside a (band, key) flow, a message gains one
      priority point per interval waited, counted from its first enqueue.
    * ``max_per_key``: the most messages one fairness key may hold queued
      (ready, delayed or leased); None = no quota.
    """

    bands: tuple[Band, ...] = ()
    default_key_weight: int = 1
    key_weights: Mapping[str, int] = field(default_factory=dict)
    aging_interval_ms: int | None = None
    retry_position: RetryPosition = RetryPosition.AHEAD
    max_per_key: int | None = None

    def validate(
        self, min_priority: int = 0, max_priority: int = MAX_PRIORITY, prefix: str = "scheduling"
    ) -> None:
        if not isinstance(self.bands, tuple) or len(self.bands) > MAX_BANDS:
            raise ConfigError(f"{prefix}.bands", f"must be a tuple of at most {MAX_BANDS} bands")
        for index, band in enumerate(self.bands):
            self._check_band(index, band, f"{prefix}.bands[{index}]")
        if self.bands:
            first, last = self.bands[0], self.bands[-1]
            if first.min_priority > min_priority:
                raise ConfigError(
                    f"{prefix}.bands[0].min_priority",
                    f"leaves priorities {min_priority}-{first.min_priority - 1} unmapped",
                )
            if last.max_priority < max_priority:
                raise ConfigError(
                    f"{prefix}.bands[{len(self.bands) - 1}].max_priority",
                    f"leaves priorities {last.max_priority + 1}-{max_priority} unmapped",
                )
        check_int(
            f"{prefix}.default_key_weight", self.default_key_weight, 1, MAX_WEIGHT, ConfigError
        )
        if not isinstance(self.key_weights, Mapping) or len(self.key_weights) > MAX_KEY_WEIGHTS:
            raise ConfigError(
                f"{prefix}.key_weights", f"must map at most {MAX_KEY_WEIGHTS} fairness keys"
            )
        for key, weight in self.key_weights.items():
            check_key(f"{prefix}.key_weights", key, 128, ConfigError)
            check_int(f"{prefix}.key_weights[{key}]", weight, 1, MAX_WEIGHT, ConfigError)
        check_optional_int(
            f"{prefix}.aging_interval_ms", self.aging_interval_ms, 1, 366 * DAY, ConfigError
        )
        if self.retry_position not in tuple(RetryPosition):
            raise ConfigError(f"{prefix}.retry_position", "must be 'ahead' or 'behind'")
        check_optional_int(f"{prefix}.max_per_key", self.max_per_key, 1, 10**9, ConfigError)

    def _check_band(self, index: int, band: object, field_name: str) -> None:
        if not isinstance(band, Band):
            raise ConfigError(field_name, "must be a Band")
        check_int(f"{field_name}.min_priority", band.min_priority, 0, MAX_PRIORITY, ConfigError)
        check_int(f"{field_name}.max_priority", band.max_priority, 0, MAX_PRIORITY, ConfigError)
        if band.max_priority < band.min_priority:
            raise ConfigError(f"{field_name}.max_priority", "must not be below min_priority")
        check_int(f"{field_name}.weight", band.weight, 1, MAX_WEIGHT, ConfigError)
        if index == 0:
            return
        before = self.bands[index - 1]
        if band.min_priority <= before.min_priority:
            raise ConfigError(
                f"{field_name}.min_priority", "bands must be listed from the lowest priorities up"
            )
        if band.min_priority <= before.max_priority:
            raise ConfigError(
                f"{field_name}.min_priority",
                f"overlaps band {index - 1} (up to {before.max_priority})",
            )
        if band.min_priority > before.max_priority + 1:
            raise ConfigError(
                f"{field_name}.min_priority",
                f"leaves priorities {before.max_priority + 1}-{band.min_priority - 1} unmapped",
            )

    def key_weight(self, key: str | None) -> int:
        if key is None:
            return self.default_key_weight
        return self.key_weights.get(key, self.default_key_weight)

    @classmethod
    def from_dict(cls, data: object, prefix: str = "scheduling") -> SchedulingPolicy:
        if not isinstance(data, dict):
            raise ConfigError(prefix, "must be a mapping")
        values = dict(data)
        if "bands" in values:
            bands = values["bands"]
            if not isinstance(bands, (list, tuple)):
                raise ConfigError(f"{prefix}.bands", "must be a list of bands")
            values["bands"] = tuple(
                _from_dict(Band, band, f"{prefix}.bands[{i}]") for i, band in enumerate(bands)
            )
        if "key_weights" in values and isinstance(values["key_weights"], dict):
            values["key_weights"] = dict(values["key_weights"])
        if "retry_position" in values:
            try:
                values["retry_position"] = RetryPosition(values["retry_position"])
            except ValueError:
                raise ConfigError(
                    f"{prefix}.retry_position", "must be 'ahead' or 'behind'"
                ) from None
        return _from_dict(cls, values, prefix)


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
    scheduling: SchedulingPolicy = field(default_factory=SchedulingPolicy)

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
        if not isinstance(self.scheduling, SchedulingPolicy):
            raise ConfigError("scheduling", "must be a SchedulingPolicy")
        self.scheduling.validate(self.min_priority, self.max_priority)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        scheduling = data["scheduling"]
        scheduling["bands"] = [dict(band) for band in scheduling["bands"]]
        scheduling["key_weights"] = dict(scheduling["key_weights"])
        scheduling["retry_position"] = str(scheduling["retry_position"])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QueueConfig:
        values = dict(data)
        if "backoff" in values:
            values["backoff"] = _from_dict(BackoffPolicy, values["backoff"], "backoff")
        if "retention" in values:
            values["retention"] = _from_dict(RetentionPolicy, values["retention"], "retention")
        if "scheduling" in values:
            values["scheduling"] = SchedulingPolicy.from_dict(values["scheduling"])
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
