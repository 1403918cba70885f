"""The weighted scheduler: priority bands, then fairness keys, then rank.

A dispatch chooses in three levels (DESIGN.md section 2):

1. a priority band, by weighted fair queueing over the bands that hold ready
   messages (``FairLevel``; band weights from the queue's ``SchedulingPolicy``);
2. a fairness key inside that band, by weighted fair queueing over its keys
   (messages without a key form one flow of their own, key ``None``);
3. the head of that (band, key) flow: highest rank first, FIFO among equals
   (``PriorityLevels``, or ``AgedOrder`` when the queue ages messages).

Each level is charged the dispatched message's ``cost``. With one band and
no keys this is strict priority. A key's flow exists only while it holds
ready messages: an idle key costs no memory. Costs other than 1 make the
levels re-price a flow when its head changes; with unit costs that work is
skipped.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Hashable
from typing import Any, NamedTuple

from kokaq.core.config import Band, SchedulingPolicy
from kokaq.core.fair import FairLevel, Member
from kokaq.core.message import Message
from kokaq.core.scheduler import AgedOrder, FlowOrder, PriorityLevels, Scheduler, rank
from kokaq.core.validation import MAX_PRIORITY

__all__ = ["BandShare", "KeyShare", "Placement", "WeightedScheduler"]


class KeyFlow(Member):
    """One fairness key's ready messages inside a band."""

    __slots__ = ("key", "messages")

    def __init__(self, key: str | None, weight: int, messages: FlowOrder) -> None:
        super().__init__(key, weight)
        self.key = key
        self.messages = messages


class BandFlow(Member):
    """One priority band: its keys and their flows."""

    __slots__ = ("band", "flows", "index", "keys", "live")

    def __init__(self, index: int, band: Band) -> None:
        super().__init__(index, band.weight)
        self.index = index
        self.band = band
        self.tiebreak = -index  # on a tie, the higher band goes first
        self.keys = FairLevel(tiebreak_by_activation=True)
        self.flows: dict[str | None, KeyFlow] = {}
        self.live = 0


class BandShare(NamedTuple):
    band: int
    min_priority: int
    max_priority: int
    weight: int
    ready: int
    dispatched: int  # since the scheduler was built (creation or reweighting)
    cost: int
    configured_share: float  # weight / sum of all band weights
    achieved_share: float  # cost / all cost dispatched


class KeyShare(NamedTuple):
    band: int
    key: str | None
    weight: int
    ready: int
    dispatched: int  # since the key last became active
    cost: int


class Placement(NamedTuple):
    """Where a ready message stands, for ``explain`` (its band, weights and
    rank come from ``classify``)."""

    band_start: int  # the band's virtual start tag, and the band level's clock
    band_vtime: int
    key_start: int  # the key's virtual start tag, and the key level's clock
    key_vtime: int
    ahead: int  # ready messages that would be dispatched before it


class WeightedScheduler(Scheduler):
    __slots__ = (
        "_bands",
        "_costly",
        "_level",
        "_live",
        "_mins",
        "_policy",
        "_sole",
        "_sole_band",
        "_sole_count",
    )

    def __init__(self, policy: SchedulingPolicy) -> None:
        self._policy = policy
        bands = policy.bands or (Band(0, MAX_PRIORITY, 1),)
        self._bands = [BandFlow(i, band) for i, band in enumerate(bands)]
        self._mins = [band.min_priority for band in bands]
        self._level = FairLevel(tiebreak_by_activation=False)
        self._live = 0
        self._costly = 0  # ready messages whose cost is not 1
        # Sole mode: while one flow of one band holds every ready message and
        # all costs are 1, dispatches skip the fair levels and are counted
        # here; _flush applies them exactly as the levels would have.
        self._sole: KeyFlow | None = None
        self._sole_band: BandFlow | None = None
        self._sole_count = 0

    def __len__(self) -> int:
        return self._live

    # -- where a message belongs ---------------------------------------------------

    def _band_of(self, priority: int) -> BandFlow:
        if len(self._bands) == 1:
            return self._bands[0]
        # Priorities outside every band (left by a narrowed priority range)
        # go to the nearest band.
        return self._bands[max(0, bisect_right(self._mins, priority) - 1)]

    def _new_flow(self, key: str | None) -> KeyFlow:
        interval = self._policy.aging_interval_ms
        order: FlowOrder = PriorityLevels() if interval is None else AgedOrder(interval)
        return KeyFlow(key, self._policy.key_weight(key), order)

    def _head_cost(self, flow: KeyFlow) -> int:
        return flow.messages.head().cost if self._costly else 1

    def _band_head_cost(self, band: BandFlow) -> int:
        if not self._costly:
            return 1
        flow = band.keys.select()
        assert isinstance(flow, KeyFlow)
        return flow.messages.head().cost

    def _flush(self) -> None:
        """Leave sole mode, charging the fair levels what it dispatched."""
        flow, band, count = self._sole, self._sole_band, self._sole_count
        if flow is None or band is None:
            return
        self._sole = self._sole_band = None
        if count:
            self._sole_count = 0
            self._level.defer(count)
            band.keys.defer(count)

    def _flush_all(self) -> None:
        """Apply every deferred charge, before reading tags or counters."""
        self._flush()
        self._level.flush()
        for band in self._bands:
            band.keys.flush()

    def _try_sole(self, band: BandFlow) -> None:
        if not self._costly and len(self._level) == 1 and band.live and len(band.keys) == 1:
            flow = band.keys.select()
            assert isinstance(flow, KeyFlow)
            self._sole, self._sole_band = flow, band

    # -- the Scheduler interface -------------------------------------------------------

    def add(self, message: Message) -> None:
        band = self._band_of(message.priority)
        key = message.fairness_key
        sole = self._sole
        if sole is not None:
            if band is self._sole_band and key == sole.key and message.cost == 1:
                sole.messages.add(message)
                self._live += 1
                band.live += 1
                return
            self._flush()
        flow = band.flows.get(key)
        if flow is None:
            flow = band.flows[key] = self._new_flow(key)
        flow.messages.add(message)
        self._live += 1
        band.live += 1
        cost = message.cost
        if cost != 1:
            self._costly += 1
        if flow.messages.live == 1:
            band.keys.activate(flow, cost)
        elif self._costly:
            band.keys.reprice(flow, self._head_cost(flow))
        if band.live == 1:
            self._level.activate(band, cost)
        elif self._costly:
            self._level.reprice(band, self._band_head_cost(band))

    def remove(self, message: Message) -> None:
        if message.entry is None:
            return
        band = self._band_of(message.priority)
        key = message.fairness_key
        flow = band.flows[key]
        if self._sole is not None:
            if flow is self._sole and flow.messages.live > 1:  # costs are all 1 here
                flow.messages.forget(message)
                self._live -= 1
                band.live -= 1
                return
            self._flush()
        flow.messages.forget(message)
        self._live -= 1
        band.live -= 1
        repriced = message.cost != 1 or self._costly
        if message.cost != 1:
            self._costly -= 1
        if not flow.messages.live:
            band.keys.deactivate(flow)
            del band.flows[key]
        elif repriced:
            band.keys.reprice(flow, self._head_cost(flow))
        if not band.live:
            self._level.deactivate(band)
        elif repriced:
            self._level.reprice(band, self._band_head_cost(band))

    def pop(self) -> Message | None:
        sole = self._sole
        if sole is not None:
            if sole.messages.live > 1:
                self._live -= 1
                self._sole_band.live -= 1  # type: ignore[union-attr]
                self._sole_count += 1
                return sole.messages.pop()
            self._flush()
        if not self._live:
            return None
        band = self._level.select()
        assert isinstance(band, BandFlow)
        flow = band.keys.select()
        assert isinstance(flow, KeyFlow)
        message = flow.messages.pop()
        cost = message.cost
        self._live -= 1
        band.live -= 1
        if cost != 1:
            self._costly -= 1
        if flow.messages.live:
            band.keys.charge(flow, cost, self._head_cost(flow))
        else:
            band.keys.charge(flow, cost, None)
            del band.flows[flow.key]
        if band.live:
            self._level.charge(band, cost, self._band_head_cost(band))
            self._try_sole(band)
        else:
            self._level.charge(band, cost, None)
        return message

    def peek(self, count: int) -> list[Message]:
        state = self.export_state()
        found: list[Message] = []
        while len(found) < count and (message := self.pop()) is not None:
            found.append(message)
        self._put_back(found, state)
        return found

    def ahead_of(self, message: Message) -> int:
        state = self.export_state()
        popped: list[Message] = []
        while (next_message := self.pop()) is not None:
            popped.append(next_message)
            if next_message is message:
                break
        self._put_back(popped, state)
        return len(popped) - 1

    def _put_back(self, popped: list[Message], state: Any) -> None:
        """Undo a simulation: the messages return, and every tag as it was."""
        for message in popped:
            self.add(message)
        self.import_state(state)

    def clear(self) -> list[Message]:
        self._flush_all()
        found = [
            m for band in self._bands for f in band.flows.values() for m in f.messages.messages()
        ]
        for message in found:
            message.entry = None
        for band in self._bands:
            band.keys = FairLevel(tiebreak_by_activation=True)
            band.flows.clear()
            band.live = 0
        self._level = FairLevel(tiebreak_by_activation=False)
        self._live = 0
        self._costly = 0
        return found

    # -- observability -----------------------------------------------------------

    def band_shares(self) -> list[BandShare]:
        self._flush_all()
        total_weight = sum(band.weight for band in self._bands)
        total_cost = sum(band.served for band in self._bands)
        return [
            BandShare(
                band.index,
                band.band.min_priority,
                band.band.max_priority,
                band.weight,
                band.live,
                band.dispatched,
                band.served,
                band.weight / total_weight,
                band.served / total_cost if total_cost else 0.0,
            )
            for band in self._bands
        ]

    def key_shares(self, limit: int) -> list[KeyShare]:
        """The active keys (at most ``limit``), most served first."""
        self._flush_all()
        shares = [
            KeyShare(
                band.index,
                flow.key,
                flow.weight,
                flow.messages.live,
                flow.dispatched,
                flow.served,
            )
            for band in self._bands
            for flow in band.flows.values()
        ]
        shares.sort(key=lambda s: (-s.cost, s.band, s.key or ""))
        return shares[:limit]

    def classify(self, message: Message) -> tuple[int, int, int, int]:
        """A message's band, band weight, key weight and rank (in any state)."""
        band = self._band_of(message.priority)
        key_weight = self._policy.key_weight(message.fairness_key)
        return band.index, band.weight, key_weight, rank(message, self._policy.aging_interval_ms)

    def place(self, message: Message) -> Placement:
        """Where a ready message stands (``message`` must be ready here)."""
        self._flush_all()
        band = self._band_of(message.priority)
        flow = band.flows[message.fairness_key]
        return Placement(
            band.start,
            self._level.vtime,
            flow.start,
            band.keys.vtime,
            self.ahead_of(message),
        )

    # -- snapshots ---------------------------------------------------------------

    def export_state(self) -> Any:
        self._flush()
        return [
            self._level.export_state(),
            [[band.dispatched, band.served] for band in self._bands],
            [band.keys.export_state() for band in self._bands],
        ]

    def import_state(self, state: Any) -> None:
        self._sole = self._sole_band = None
        self._sole_count = 0
        level, band_totals, key_levels = state
        active: dict[Hashable, Member] = {b.name: b for b in self._bands if b.live}
        self._level.import_state(level, active)
        for band, totals, keys in zip(self._bands, band_totals, key_levels, strict=True):
            band.dispatched, band.served = totals
            band.keys.import_state(keys, band.flows)
