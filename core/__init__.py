"""kokaq.core: the pure, deterministic queue engine.

No I/O, no clock, no randomness: time and ids arrive as arguments. See
``Engine`` for the operations and ``kokaq.core.errors`` for the error tree.
"""

from __future__ import annotations

from kokaq.core.config import BackoffPolicy, NamespaceConfig, QueueConfig, RetentionPolicy
from kokaq.core.engine import MAX_BATCH, Engine
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
    QueueExists,
    QueueFull,
    QueueNotFound,
    ResourceExhausted,
    Unavailable,
)
from kokaq.core.message import FailureReason, Headers, MessageSpec, MessageState, MessageView
from kokaq.core.results import (
    DeadPage,
    EnqueueResult,
    NackOutcome,
    NackResult,
    NamespaceInfo,
    QueueInfo,
    QueueStats,
    TickReport,
)
from kokaq.core.validation import MAX_PRIORITY

__all__ = [
    # the engine
    "MAX_BATCH",
    "MAX_PRIORITY",
    "Engine",
    # configuration
    "BackoffPolicy",
    "NamespaceConfig",
    "QueueConfig",
    "RetentionPolicy",
    # messages
    "FailureReason",
    "Headers",
    "MessageSpec",
    "MessageState",
    "MessageView",
    # results
    "DeadPage",
    "EnqueueResult",
    "NackOutcome",
    "NackResult",
    "NamespaceInfo",
    "QueueInfo",
    "QueueStats",
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
    "QueueExists",
    "QueueFull",
    "QueueNotFound",
    "ResourceExhausted",
    "Unavailable",
]
