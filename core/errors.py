"""The kokaq error hierarchy: one root, subclasses that carry data.

::

    KokaqError
    ├── InvalidArgument(field, reason)            bad input; nothing changed
    │   ├── ConfigError(field, reason)            a configuration rule broken
    │   └── PayloadTooLarge(field, size, limit)
    ├── NotFound
    │   ├── NamespaceNotFound(namespace)
    │   ├── QueueNotFound(namespace, queue)
    │   ├── ScheduleNotFound(namespace, schedule)
    │   └── MessageNotFound(namespace, queue, message_id)
    ├── AlreadyExists
    │   ├── NamespaceExists(namespace)
    │   ├── QueueExists(namespace, queue)
    │   └── MessageExists(namespace, queue, message_id)
    ├── FailedPrecondition
    │   ├── NotEmpty(namespace, queue, count)     delete without ``force``
    │   ├── LockLost(message_id)                  wrong or expired lock id
    │   └── InvalidState(message_id, state, expected)
    ├── ResourceExhausted(reason)
    │   └── QueueFull(namespace, queue, limit, fairness_key)
    ├── Unavailable(reason)                       try again (elsewhere); outcome unknown
    │   └── NotLeader(leader_hint)
    ├── Unauthenticated(reason)                   no API key, or an unknown one
    └── PermissionDenied(reason)                  the key's role or scope forbids the call

Every error keeps its data as attributes named in ``fields``; ``details()``
returns them as a plain dict and ``cls(**details)`` rebuilds the same error,
which is how errors cross the replication log and the wire.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AlreadyExists",
    "ConfigError",
    "FailedPrecondition",
    "InvalidArgument",
    "InvalidState",
    "KokaqError",
    "LockLost",
    "MessageExists",
    "MessageNotFound",
    "NamespaceExists",
    "NamespaceNotFound",
    "NotEmpty",
    "NotFound",
    "NotLeader",
    "PayloadTooLarge",
    "PermissionDenied",
    "QueueExists",
    "QueueFull",
    "QueueNotFound",
    "ResourceExhausted",
    "ScheduleNotFound",
    "Unauthenticated",
    "Unavailable",
    "error_classes",
]


class KokaqError(Exception):
    """Root of every error kokaq raises on purpose."""

    fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.__class__.__name__)

    @property
    def message(self) -> str:
        return str(self.args[0])

    def details(self) -> dict[str, Any]:
        """The error's data, enough to rebuild it with ``type(self)(**details)``."""
        return {name: getattr(self, name) for name in self.fields}

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self).__name__, self.details())

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, KokaqError)
            and type(other) is type(self)
            and other.details() == self.details()
        )

    __hash__ = Exception.__hash__


def _rebuild(name: str, details: dict[str, Any]) -> KokaqError:
    return error_classes()[name](**details)


# -- invalid input -----------------------------------------------------------


class InvalidArgument(KokaqError):
    """A request field broke a rule. ``field`` names it (``items[3].priority``)."""

    fields: ClassVar[tuple[str, ...]] = ("field", "reason")

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")

    def at(self, prefix: str) -> InvalidArgument:
        """The same error for the field inside ``prefix`` (``items[3]`` + ``priority``)."""
        details = self.details()
        details["field"] = f"{prefix}.{self.field}" if self.field else prefix
        return type(self)(**details)


class ConfigError(InvalidArgument):
    """A configuration value broke a rule (raised by ``validate()``)."""


class PayloadTooLarge(InvalidArgument):
    fields = ("field", "size", "limit")

    def __init__(self, field: str, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        what = field.rsplit(".", 1)[-1]  # "payload", or an ack's "result"
        super().__init__(field, f"{what} is {size} bytes, the limit is {limit}")


# -- not found / already exists ------------------------------------------------


class NotFound(KokaqError):
    pass


class NamespaceNotFound(NotFound):
    fields = ("namespace",)

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        super().__init__(f"namespace {namespace!r} not found")


class QueueNotFound(NotFound):
    fields = ("namespace", "queue")

    def __init__(self, namespace: str, queue: str) -> None:
        self.namespace = namespace
        self.queue = queue
        super().__init__(f"queue {namespace}/{queue} not found")


class ScheduleNotFound(NotFound):
    fields = ("namespace", "schedule")

    def __init__(self, namespace: str, schedule: str) -> None:
        self.namespace = namespace
        self.schedule = schedule
        super().__init__(f"schedule {namespace}/{schedule} not found")


class MessageNotFound(NotFound):
    fields = ("namespace", "queue", "message_id")

    def __init__(self, namespace: str, queue: str, message_id: str) -> None:
        self.namespace = namespace
        self.queue = queue
        self.message_id = message_id
        super().__init__(f"message {message_id!r} not found in {namespace}/{queue}")


class AlreadyExists(KokaqError):
    pass


class NamespaceExists(AlreadyExists):
    fields = ("namespace",)

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        super().__init__(f"namespace {namespace!r} already exists")


class QueueExists(AlreadyExists):
    fields = ("namespace", "queue")

    def __init__(self, namespace: str, queue: str) -> None:
        self.namespace = namespace
        self.queue = queue
        super().__init__(f"queue {namespace}/{queue} already exists")


class MessageExists(AlreadyExists):
    fields = ("namespace", "queue", "message_id")

    def __init__(self, namespace: str, queue: str, message_id: str) -> None:
        self.namespace = namespace
        self.queue = queue
        self.message_id = message_id
        super().__init__(f"message id {message_id!r} is already used in {namespace}/{queue}")


# -- state ---------------------------------------------------------------------


class FailedPrecondition(KokaqError):
    pass


class NotEmpty(FailedPrecondition):
    """Deleting a namespace or queue that still holds something, without ``force``."""

    fields = ("namespace", "queue", "count")

    def __init__(self, namespace: str, queue: str | None, count: int) -> None:
        self.namespace = namespace
        self.queue = queue
        self.count = count
        what = f"queue {namespace}/{queue}" if queue is not None else f"namespace {namespace!r}"
        super().__init__(f"{what} is not empty ({count} held); pass force to delete it")


class LockLost(FailedPrecondition):
    """The lock id is wrong, or the lease behind it has ended."""

    fields = ("message_id",)

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        super().__init__(f"message {message_id!r} is not leased under this lock id")


class InvalidState(FailedPrecondition):
    """The message exists but is not in a state the operation accepts."""

    fields = ("message_id", "state", "expected")

    def __init__(self, message_id: str, state: str, expected: str) -> None:
        self.message_id = message_id
        self.state = state
        self.expected = expected
        super().__init__(f"message {message_id!r} is {state}, expected {expected}")


class ResourceExhausted(KokaqError):
    fields: ClassVar[tuple[str, ...]] = ("reason",)

    def __init__(self, reason: str = "") -> None:
        self.reason = reason
        super().__init__(reason)


class QueueFull(ResourceExhausted):
    fields = ("namespace", "queue", "limit", "fairness_key")

    def __init__(
        self, namespace: str, queue: str, limit: int, fairness_key: str | None = None
    ) -> None:
        self.namespace = namespace
        self.queue = queue
        self.limit = limit
        self.fairness_key = fairness_key
        scope = f" for fairness key {fairness_key!r}" if fairness_key is not None else ""
        super().__init__(f"queue {namespace}/{queue} is full{scope} (limit {limit})")


class Unavailable(KokaqError):
    """The node cannot answer now. A write may or may not have been applied:
    retry it with the same dedup key."""

    fields: ClassVar[tuple[str, ...]] = ("reason",)

    def __init__(self, reason: str = "") -> None:
        self.reason = reason
        super().__init__(reason or "unavailable")


class NotLeader(Unavailable):
    """This node cannot take writes; ``leader_hint`` is where to go, if known."""

    fields = ("leader_hint",)

    def __init__(self, leader_hint: str | None = None) -> None:
        self.leader_hint = leader_hint
        super().__init__(f"not the leader (leader: {leader_hint or 'unknown'})")


class Unauthenticated(KokaqError):
    fields: ClassVar[tuple[str, ...]] = ("reason",)

    def __init__(self, reason: str = "") -> None:
        self.reason = reason
        super().__init__(reason or "unauthenticated")


class PermissionDenied(KokaqError):
    fields: ClassVar[tuple[str, ...]] = ("reason",)

    def __init__(self, reason: str = "") -> None:
        self.reason = reason
        super().__init__(reason or "permission denied")


def error_classes() -> dict[str, type[KokaqError]]:
    """Every error class by name, for rebuilding errors from their details."""
    found: dict[str, type[KokaqError]] = {}
    pending: list[type[KokaqError]] = [KokaqError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found
