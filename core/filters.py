"""Selecting messages by their fields, for bulk operations (reprioritize)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from kokaq.core.errors import InvalidArgument
from kokaq.core.message import Message, MessageState
from kokaq.core.validation import MAX_PRIORITY, check_int, check_key

__all__ = ["MessageFilter"]

_MAX_TIME = 2**53
_SELECTABLE = (MessageState.READY, MessageState.DELAYED, MessageState.DEAD)


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageFilter:
    """Messages that match every field given (None = any).

    ``states`` may name ready, delayed and dead (leased messages belong to
    their consumers until they come back); the default is all three.
    ``enqueued_before`` / ``enqueued_after`` compare the first enqueue time
    (exclusive bounds); ``type`` is the ``type`` header.
    """

    fairness_key: str | None = None
    min_priority: int | None = None
    max_priority: int | None = None
    states: tuple[MessageState, ...] = _SELECTABLE
    enqueued_before: int | None = None
    enqueued_after: int | None = None
    type: str | None = None

    def validate(self, prefix: str = "filter") -> None:
        if self.fairness_key is not None:
            check_key(f"{prefix}.fairness_key", self.fairness_key)
        for name in ("min_priority", "max_priority"):
            if (value := getattr(self, name)) is not None:
                check_int(f"{prefix}.{name}", value, 0, MAX_PRIORITY)
        if (
            self.min_priority is not None
            and self.max_priority is not None
            and self.min_priority > self.max_priority
        ):
            raise InvalidArgument(f"{prefix}.max_priority", "must not be below min_priority")
        if not isinstance(self.states, tuple) or not self.states:
            raise InvalidArgument(f"{prefix}.states", "must name at least one state")
        for state in self.states:
            if state not in _SELECTABLE:
                raise InvalidArgument(f"{prefix}.states", "may name only ready, delayed and dead")
        for name in ("enqueued_before", "enqueued_after"):
            if (value := getattr(self, name)) is not None:
                check_int(f"{prefix}.{name}", value, 0, _MAX_TIME)
        if self.type is not None:
            check_key(f"{prefix}.type", self.type, 256)

    def matches(self, m: Message) -> bool:
        return (
            m.state in self.states
            and (self.fairness_key is None or m.fairness_key == self.fairness_key)
            and (self.min_priority is None or m.priority >= self.min_priority)
            and (self.max_priority is None or m.priority <= self.max_priority)
            and (self.enqueued_before is None or m.created_at < self.enqueued_before)
            and (self.enqueued_after is None or m.created_at > self.enqueued_after)
            and (self.type is None or (m.headers is not None and m.headers.type == self.type))
        )

    @classmethod
    def from_dict(cls, data: object, prefix: str = "filter") -> MessageFilter:
        """Build from the wire form; unknown keys and states are named errors."""
        if not isinstance(data, dict):
            raise InvalidArgument(prefix, "must be a mapping")
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise InvalidArgument(f"{prefix}.{key}", "is not a known filter")
            values[key] = value
        if "states" in values:
            states = values["states"]
            if isinstance(states, str) or not isinstance(states, (list, tuple)):
                raise InvalidArgument(f"{prefix}.states", "must be a list of states")
            try:
                values["states"] = tuple(MessageState(s) for s in states)
            except ValueError:
                raise InvalidArgument(
                    f"{prefix}.states", "may name only ready, delayed and dead"
                ) from None
        return cls(**values)
