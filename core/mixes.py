"""Weighted multi-queue dequeue: which queue of a mix serves the next message.

A consumer may lease from several queues of a namespace at once, each with a
weight (like Sidekiq's weighted queues, but deterministic and fair): the
queues are members of a ``FairLevel``, charged the cost of what they serve.
The level's state persists between calls, per mix (the namespace and the
exact list of queues and weights), so fairness holds across many small
dequeues. Mixes are few in practice; past ``MAX_MIXES`` the least recently
used one is forgotten (it restarts fair, losing only its history).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from kokaq.core.fair import FairLevel, Member

__all__ = ["MAX_MIXES", "Mix", "MixKey", "QueueMixes"]

MAX_MIXES = 1024

MixKey = tuple[str, tuple[tuple[str, int], ...]]


class Mix:
    __slots__ = ("level", "members")

    def __init__(self, queues: tuple[tuple[str, int], ...]) -> None:
        self.level = FairLevel(tiebreak_by_activation=False)
        self.members: dict[Hashable, Member] = {}
        for index, (name, weight) in enumerate(queues):
            member = self.members[name] = Member(name, weight)
            member.tiebreak = index  # on a tie, the queue named first

    def sync(self, ready: dict[str, bool]) -> None:
        """Match the level's active members to the queues that have ready messages."""
        level = self.level
        for name, has_ready in ready.items():
            member = self.members[name]
            if has_ready and name not in level.active:
                level.activate(member, 1)
            elif not has_ready and name in level.active:
                level.deactivate(member)


class QueueMixes:
    __slots__ = ("_mixes",)

    def __init__(self) -> None:
        self._mixes: dict[MixKey, Mix] = {}

    def get(self, key: MixKey) -> Mix:
        mix = self._mixes.pop(key, None)
        if mix is None:
            mix = Mix(key[1])
            if len(self._mixes) >= MAX_MIXES:
                del self._mixes[next(iter(self._mixes))]
        self._mixes[key] = mix  # the most recently used last
        return mix

    def export_state(self) -> list[Any]:
        return [
            [namespace, [list(pair) for pair in queues], mix.level.export_state()]
            for (namespace, queues), mix in self._mixes.items()
        ]

    @classmethod
    def import_state(cls, state: list[Any]) -> QueueMixes:
        mixes = cls()
        for namespace, queues, level in state:
            key: MixKey = (namespace, tuple((name, weight) for name, weight in queues))
            mix = mixes._mixes[key] = Mix(key[1])
            mix.level.import_state(level, mix.members)
        return mixes
