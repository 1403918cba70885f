"""A namespace: a named group of queues with its own settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kokaq.core.config import NamespaceConfig
from kokaq.core.results import NamespaceInfo

if TYPE_CHECKING:
    from kokaq.core.queue import Queue
    from kokaq.core.schedules import Schedule

__all__ = ["Namespace"]


class Namespace:
    __slots__ = ("config", "created_at", "name", "queues", "schedules", "updated_at")

    def __init__(self, name: str, config: NamespaceConfig, now: int) -> None:
        self.name = name
        self.config = config
        self.created_at = now
        self.updated_at = now
        self.queues: dict[str, Queue] = {}
        self.schedules: dict[str, Schedule] = {}

    def info(self) -> NamespaceInfo:
        return NamespaceInfo(
            self.name, self.config, self.created_at, self.updated_at, len(self.queues)
        )
