"""kokaq.core: the pure, deterministic queue engine.

No I/O, no clock, no randomness: time and ids arrive as arguments. See
``Engine`` for the operations and ``kokaq.core.errors`` for the error tree.
"""

from __future__ import annotations

from kokaq.core.config import (
    BackoffPolicy,
    Band,
    NamespaceConfig,
    QueueConfig,
    RetentionPolicy,
    RetryPosition,
    SchedulingPolicy,
)
from kokaq.core.engine import MAX_BATCH, MAX_MIX, Engine
from kokaq.core.errors import (
    AlreadyExists,
    ConfigError,
    FailedPrecondition,
    InvalidArgument,
    InvalidState,
    KokaqError,
    LockLost,
    MessageExists,
    MessageNotFound,
    NamespaceExists,
    NamespaceNotFound,
    NotEmpty,
    NotFound,
    NotLeader,
    PayloadTooLarge,
    PermissionDenied,
    QueueExists,
    QueueFull,
    QueueNotFound,
    ResourceExhausted,
    ScheduleNotFound,
    Unauthenticated,
    Unavailable,
)
from kokaq.core.filters import MessageFilter
from kokaq.core.message import (
    MAX_PROGRESS,
    FailureReason,
    Headers,
    MessageSpec,
    MessageState,
    MessageView,
)
from kokaq.core.results import (
    DeadPage,
    EnqueueResult,
    Explanation,
    NackOutcome,
    NackResult,
    NamespaceInfo,
    QueueInfo,
    QueueStats,
    SchedulingStats,
    TickReport,
)
from kokaq.core.schedules import ScheduleInfo, ScheduleSpec
from kokaq.core.validation import MAX_PRIORITY
from kokaq.core.weighted import BandShare, KeyShare

__all__ = [
    # the engine
    "MAX_BATCH",
    "MAX_MIX",
    "MAX_PROGRESS",
    "MAX_PRIORITY",
    "Engine",
    # configuration
    "BackoffPolicy",
    "Band",
    "NamespaceConfig",
    "QueueConfig",
    "RetentionPolicy",
    "RetryPosition",
    "SchedulingPolicy",
    # messages
    "FailureReason",
    "Headers",
    "MessageFilter",
    "MessageSpec",
    "MessageState",
    "MessageView",
    # results
    "DeadPage",
    "EnqueueResult",
    "Explanation",
    "NackOutcome",
    "NackResult",
    "NamespaceInfo",
    "QueueInfo",
    "QueueStats",
    "ScheduleInfo",
    "ScheduleSpec",
    "SchedulingStats",
    "BandShare",
    "KeyShare",
    "TickReport",
    # errors
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
    "ScheduleNotFound",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
]
