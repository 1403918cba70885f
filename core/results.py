"""What engine operations return: small immutable values."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from kokaq.core.config import NamespaceConfig, QueueConfig
from kokaq.core.message import MessageState, MessageView
from kokaq.core.weighted import BandShare, KeyShare

__all__ = [
    "DeadPage",
    "EnqueueResult",
    "Explanation",
    "NackOutcome",
    "NackResult",
    "NamespaceInfo",
    "QueueInfo",
    "QueueStats",
    "SchedulingStats",
    "TickReport",
    "Totals",
]


class EnqueueResult(NamedTuple):
    message_id: str
    state: MessageState | None  # None: a duplicate whose first message is gone
    visible_at: int | None
    duplicate: bool = False  # True: the dedup key was seen; nothing was added


class NackOutcome(StrEnum):
    REQUEUED = "requeued"  # ready again now
    DELAYED = "delayed"  # ready again at visible_at (backoff or explicit delay)
    DEAD_LETTERED = "dead_lettered"
    DROPPED = "dropped"  # deliveries used up or expired, and the DLQ is off
    EXPIRED = "expired"  # past its TTL; dead-lettered if the DLQ is on


class NackResult(NamedTuple):
    outcome: NackOutcome
    visible_at: int | None = None


class DeadPage(NamedTuple):
    messages: list[MessageView]
    next_cursor: int | None  # pass as ``after`` for the next page; None at the end


class Totals:
    """Running counters of a queue since it was created."""

    __slots__ = ("acked", "dead_lettered", "dequeued", "enqueued", "expired", "nacked")

    def __init__(self) -> None:
        self.enqueued = 0
        self.dequeued = 0
        self.acked = 0
        self.nacked = 0
        self.expired = 0
        self.dead_lettered = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> Totals:
        totals = cls()
        for name in cls.__slots__:
            setattr(totals, name, int(data[name]))
        return totals


@dataclass(frozen=True, slots=True)
class QueueStats:
    ready: int
    delayed: int
    leased: int
    succeeded: int
    dead: int
    oldest_ready_age_ms: int | None  # None when nothing is ready
    totals: dict[str, int]
    paused: bool = False  # dispatching nothing (Engine.pause_queue)


@dataclass(frozen=True, slots=True)
class NamespaceInfo:
    name: str
    config: NamespaceConfig
    created_at: int
    updated_at: int
    queue_count: int


@dataclass(frozen=True, slots=True)
class QueueInfo:
    namespace: str
    name: str
    config: QueueConfig
    created_at: int
    updated_at: int
    paused_at: int | None = None  # since when it dispatches nothing; None: running


@dataclass(frozen=True, slots=True)
class TickReport:
    """What ``tick`` changed, per kind of transition, and when to tick next."""

    promoted: int = 0  # delayed -> ready
    lease_expired: int = 0  # leases that ran out (message requeued, dead or dropped)
    expired: int = 0  # messages past their TTL
    dead_lettered: int = 0
    dropped: int = 0
    purged: int = 0  # succeeded messages past retention
    queues: tuple[tuple[str, str], ...] = field(default=())  # queues that changed
    next_due: int | None = None  # the earliest pending deadline, if any


@dataclass(frozen=True, slots=True)
class SchedulingStats:
    """Dispatches and cost per band (with achieved against configured share)
    and per active fairness key."""

    bands: list[BandShare]
    keys: list[KeyShare]


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a message waits where it does (``Engine.explain``).

    ``rank`` is its static key inside its (band, key) flow: the priority, or
    with aging ``priority * aging_interval_ms - created_at``. The virtual
    times and ``ahead`` (how many ready messages would be dispatched before
    it) are given only while it is ready.
    """

    message_id: str
    state: MessageState
    priority: int
    effective_priority: int  # priority plus whole aging intervals waited
    band: int
    band_weight: int
    fairness_key: str | None
    key_weight: int
    rank: int
    band_start: int | None = None
    band_vtime: int | None = None
    key_start: int | None = None
    key_vtime: int | None = None
    ahead: int | None = None
