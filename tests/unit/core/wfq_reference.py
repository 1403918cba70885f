"""A brute-force reference of kokaq's weighted scheduling, over plain lists.

It replays the definition in ``kokaq.core.fair`` (WF2Q+ in integer virtual
time) and ``kokaq.core.weighted`` (bands, then keys, then rank) with linear
scans and no heaps, no lazy deletion and no fast paths, so the real
scheduler can be checked against it choice by choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SCALE = 1 << 64


@dataclass
class RefMessage:
    id: str
    priority: int
    seq: int
    created_at: int
    key: str | None = None
    cost: int = 1


@dataclass
class RefMember:
    weight: int
    tiebreak: int
    start: int = 0
    finish: int = 0


@dataclass
class RefLevel:
    by_activation: bool
    vtime: int = 0
    activations: int = 0
    active: dict[object, RefMember] = field(default_factory=dict)
    resting: dict[object, int] = field(default_factory=dict)

    def activate(self, name: object, weight: int, tiebreak: int, head: int) -> None:
        if self.by_activation:
            self.activations += 1
            tiebreak = self.activations
        member = RefMember(weight, tiebreak)
        member.start = max(self.resting.pop(name, 0), self.vtime)
        member.finish = member.start + head * (SCALE // weight)
        self.active[name] = member
        self.settle()

    def leave(self, name: object) -> None:
        member = self.active.pop(name)
        if member.start > self.vtime:
            self.resting[name] = member.start
        self.settle()

    def reprice(self, name: object, head: int) -> None:
        member = self.active[name]
        member.finish = member.start + head * (SCALE // member.weight)

    def settle(self) -> None:
        if self.active and not any(m.start <= self.vtime for m in self.active.values()):
            self.vtime = min(m.start for m in self.active.values())

    def select(self) -> object:
        eligible = [
            (m.finish, m.tiebreak, n) for n, m in self.active.items() if m.start <= self.vtime
        ]
        return min(eligible, key=lambda e: (e[0], e[1]))[2]

    def charge(self, name: object, cost: int, head: int | None) -> None:
        total = sum(m.weight for m in self.active.values())
        self.vtime += cost * (SCALE // total)
        member = self.active[name]
        member.start += cost * (SCALE // member.weight)
        if head is None:
            self.leave(name)
        else:
            member.finish = member.start + head * (SCALE // member.weight)
            self.settle()


class RefScheduler:
    """Bands ``[(min, max, weight)]``, key weights, optional aging interval."""

    def __init__(
        self,
        bands: list[tuple[int, int, int]],
        key_weights: dict[str, int] | None = None,
        aging: int | None = None,
    ) -> None:
        self.bands = bands
        self.key_weights: dict[str | None, int] = {}
        self.key_weights.update(key_weights or {})
        self.aging = aging
        self.top = RefLevel(by_activation=False)
        self.levels = [RefLevel(by_activation=True) for _ in bands]
        self.flows: list[dict[str | None, list[RefMessage]]] = [{} for _ in bands]

    def band_of(self, priority: int) -> int:
        for index, (low, high, _) in enumerate(self.bands):
            if low <= priority <= high:
                return index
        raise AssertionError(priority)

    def order(self, m: RefMessage) -> tuple[int, int]:
        rank = m.priority if self.aging is None else m.priority * self.aging - m.created_at
        return (-rank, m.seq)

    def head_cost(self, band: int, key: str | None) -> int:
        return min(self.flows[band][key], key=self.order).cost

    def band_head(self, band: int) -> int:
        return self.head_cost(band, self.levels[band].select())  # type: ignore[arg-type]

    def reprice(self, band: int, key: str | None) -> None:
        if self.flows[band].get(key):
            self.levels[band].reprice(key, self.head_cost(band, key))
        if self.flows[band]:
            self.top.reprice(band, self.band_head(band))

    def add(self, m: RefMessage) -> None:
        band = self.band_of(m.priority)
        flows = self.flows[band]
        band_was_empty = not flows
        if m.key not in flows:
            flows[m.key] = [m]
            self.levels[band].activate(m.key, self.key_weights.get(m.key, 1), 0, m.cost)
        else:
            flows[m.key].append(m)
        if band_was_empty:
            self.top.activate(band, self.bands[band][2], -band, m.cost)
        self.reprice(band, m.key)

    def remove(self, m: RefMessage) -> None:
        band = self.band_of(m.priority)
        flows = self.flows[band]
        flows[m.key].remove(m)
        if not flows[m.key]:
            del flows[m.key]
            self.levels[band].leave(m.key)
        if not flows:
            self.top.leave(band)
        self.reprice(band, m.key)

    def pop(self) -> RefMessage | None:
        if not self.top.active:
            return None
        band = self.top.select()
        assert isinstance(band, int)
        level, flows = self.levels[band], self.flows[band]
        key = level.select()
        assert key is None or isinstance(key, str)
        message = min(flows[key], key=self.order)
        flows[key].remove(message)
        if flows[key]:
            level.charge(key, message.cost, self.head_cost(band, key))
        else:
            del flows[key]
            level.charge(key, message.cost, None)
        if flows:
            self.top.charge(band, message.cost, self.band_head(band))
        else:
            self.top.charge(band, message.cost, None)
        return message
