"""Weighted fair queueing (WF2Q+) among the members of one level, in integer time.

The members of a level (priority bands, fairness keys inside a band, queues of
a multi-queue dequeue) each have a weight. Every active member carries a
virtual *start* tag ``S`` and *finish* tag ``F = S + cost(head) * stride``
where ``stride = SCALE // weight``; the level has a virtual time ``V``.

* A member becoming active starts at ``max(V, where it left off)``: one that
  was idle long enough accrues no credit, and one that empties and refills at
  once cannot jump ahead of its turn.
* A choice takes, among the *eligible* members (``S <= V``), the one with the
  smallest finish tag; ties go to the smaller ``tiebreak``.
* Serving cost ``c`` from member m advances ``S_m += c * stride_m`` and
  ``V += c * (SCALE // total weight of the active members)``; when nothing is
  eligible, ``V`` jumps to the smallest start tag.

This is WF2Q+ (Bennett and Zhang, 1997): while a set of members stays
backlogged, each one's served cost stays within one message of its weighted
share of the total, so over any window it is within two. All arithmetic is on
Python integers; ``SCALE`` (2**64) makes the rounding in ``SCALE // weight``
worth less than one message per 2**44 dispatches.

Eligible members sit in a heap by ``(F, tiebreak)``, the others in a heap by
``(S, tiebreak)``; entries are tuples whose identity the member remembers
(``entry``), so a stale entry is skipped (lazy deletion, as in ``indexes``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from heapq import heapify, heappop, heappush, heapreplace
from typing import Any

__all__ = ["SCALE", "FairLevel", "Member"]

SCALE = 1 << 64

_Entry = tuple[int, int, "Member"]


class Member:
    """One weighted member of a ``FairLevel``; subclasses add what it serves."""

    __slots__ = (
        "dispatched",
        "entry",
        "finish",
        "name",
        "served",
        "start",
        "stride",
        "tiebreak",
        "weight",
    )

    def __init__(self, name: Hashable, weight: int) -> None:
        self.name = name
        self.weight = weight
        self.stride = SCALE // weight
        self.start = 0
        self.finish = 0
        self.tiebreak = 0
        self.entry: _Entry | None = None  # its live heap entry while active
        self.dispatched = 0  # messages served, for the share statistics
        self.served = 0  # cost served


class FairLevel:
    """WF2Q+ over members. ``tiebreak_by_activation``: ties go to the member
    that became active first (fairness keys); otherwise members bring a fixed
    ``tiebreak`` of their own (bands, queues)."""

    __slots__ = (
        "activations",
        "active",
        "eligible",
        "pending",
        "resting",
        "tiebreak_by_activation",
        "unit",
        "vtime",
        "waiting",
        "weight_sum",
    )

    def __init__(self, tiebreak_by_activation: bool) -> None:
        self.tiebreak_by_activation = tiebreak_by_activation
        self.vtime = 0
        self.weight_sum = 0
        self.unit = 0  # SCALE // weight_sum: how far V moves per unit of cost
        self.activations = 0
        # Unit charges to the only active member not yet applied (see defer).
        self.pending = 0
        self.active: dict[Hashable, Member] = {}
        self.eligible: list[_Entry] = []  # by (finish, tiebreak)
        self.waiting: list[_Entry] = []  # by (start, tiebreak)
        # Members that went idle with their start tag ahead of V: where they
        # resume if they come back before V catches up (swept once it has).
        self.resting: dict[Hashable, int] = {}

    def __len__(self) -> int:
        return len(self.active)

    # -- membership --------------------------------------------------------------

    def activate(self, member: Member, head_cost: int) -> None:
        """``member`` has work again; ``head_cost`` is the cost of its next message."""
        if self.pending:
            self.flush()
        start = self.resting.pop(member.name, 0)
        member.start = start if start > self.vtime else self.vtime
        member.finish = member.start + head_cost * member.stride
        if self.tiebreak_by_activation:
            self.activations += 1
            member.tiebreak = self.activations
        self.active[member.name] = member
        self._reweigh(member.weight)
        self._place(member)
        self._settle()

    def deactivate(self, member: Member) -> None:
        """``member`` ran out of work without being served (its messages left)."""
        if self.pending:
            self.flush()
        member.entry = None
        self._leave(member)
        self._settle()

    def reprice(self, member: Member, head_cost: int) -> None:
        """The cost of ``member``'s next message changed (only with non-unit costs)."""
        if self.pending:
            self.flush()
        finish = member.start + head_cost * member.stride
        if finish != member.finish:
            member.finish = finish
            self._place(member)
            self._tidy()

    # -- choosing ----------------------------------------------------------------

    def select(self) -> Member:
        """The member to serve next; the level must have an active member."""
        eligible = self.eligible
        while eligible[0][2].entry is not eligible[0]:
            heappop(eligible)
        return eligible[0][2]

    def charge(self, member: Member, cost: int, head_cost: int | None) -> None:
        """``member`` (just selected) was served ``cost``; ``head_cost`` is the
        cost of its next message, or None if it has no more work."""
        if cost == 1 and head_cost == 1 and self.weight_sum == member.weight:
            self.pending += 1  # the only active member: see defer
            return
        if self.pending:
            self.flush()
        vtime = self.vtime = self.vtime + cost * self.unit
        start = member.start = member.start + cost * member.stride
        member.dispatched += 1
        member.served += cost
        eligible = self.eligible
        if head_cost is None:
            heappop(eligible)
            member.entry = None
            self._leave(member)
            self._settle()
            return
        finish = member.finish = start + head_cost * member.stride
        if start <= vtime:
            entry = member.entry = (finish, member.tiebreak, member)
            heapreplace(eligible, entry)
            if self.waiting:
                self._settle()
            return
        # It must wait. The usual case with many members: the first waiting
        # one becomes eligible now, so the two swap places (two heap
        # operations, not four).
        entry = member.entry = (start, member.tiebreak, member)
        waiting = self.waiting
        while waiting and waiting[0][2].entry is not waiting[0]:
            heappop(waiting)
        if waiting and waiting[0][0] <= vtime:
            moved = heapreplace(waiting, entry)[2]
            moved_entry = moved.entry = (moved.finish, moved.tiebreak, moved)
            heapreplace(eligible, moved_entry)
        else:
            heappush(waiting, entry)
            heappop(eligible)
        self._settle()

    def defer(self, count: int) -> None:
        """Record ``count`` unit charges to the only active member, each leaving
        its next message at cost 1, to apply later (``flush``). A sole member's
        start tag and V move together, so applying them at once gives exactly
        the tags as many ``charge`` calls would: O(1) per dispatch."""
        self.pending += count

    def flush(self) -> None:
        """Apply deferred charges; before anything reads or changes the tags."""
        count, self.pending = self.pending, 0
        if not count:
            return
        (member,) = self.active.values()
        self.vtime += count * self.unit
        member.start += count * member.stride
        member.finish = member.start + member.stride
        member.dispatched += count
        member.served += count
        self._place(member)
        self._tidy()

    # -- invariants --------------------------------------------------------------

    def _reweigh(self, delta: int) -> None:
        self.weight_sum += delta
        self.unit = SCALE // self.weight_sum if self.weight_sum else 0

    def _leave(self, member: Member) -> None:
        """Take an inactive ``member`` (entry already dropped) off the books."""
        del self.active[member.name]
        self._reweigh(-member.weight)
        if member.start > self.vtime:
            self.resting[member.name] = member.start
        self._tidy()

    def _place(self, member: Member) -> None:
        if member.start <= self.vtime:
            entry = (member.finish, member.tiebreak, member)
            heappush(self.eligible, entry)
        else:
            entry = (member.start, member.tiebreak, member)
            heappush(self.waiting, entry)
        member.entry = entry

    def _settle(self) -> None:
        """Make every member with ``S <= V`` eligible, and keep one eligible
        while any is active (raising V to the smallest start tag)."""
        eligible, waiting = self.eligible, self.waiting
        while eligible and eligible[0][2].entry is not eligible[0]:
            heappop(eligible)
        while waiting and waiting[0][2].entry is not waiting[0]:
            heappop(waiting)
        if not waiting:
            return
        if not eligible and waiting[0][0] > self.vtime:
            self.vtime = waiting[0][0]
        while waiting and waiting[0][0] <= self.vtime:
            member = heappop(waiting)[2]
            entry = (member.finish, member.tiebreak, member)
            member.entry = entry
            heappush(eligible, entry)
            while waiting and waiting[0][2].entry is not waiting[0]:
                heappop(waiting)

    def _tidy(self) -> None:
        """Bound the stale entries and resting members by the active ones."""
        limit = 2 * len(self.active) + 32
        if len(self.eligible) + len(self.waiting) > limit:
            self.eligible = [e for e in self.eligible if e[2].entry is e]
            self.waiting = [e for e in self.waiting if e[2].entry is e]
            heapify(self.eligible)
            heapify(self.waiting)
        if len(self.resting) > limit:
            vtime = self.vtime
            self.resting = {name: s for name, s in self.resting.items() if s > vtime}

    # -- snapshots ---------------------------------------------------------------

    def export_state(self) -> list[Any]:
        """The tags that decide future choices (msgpack-able; names must be too).
        Virtual times outgrow 64 bits, so they travel as hex strings."""
        self.flush()
        return [
            _hex(self.vtime),
            self.activations,
            [[name, _hex(start)] for name, start in self.resting.items()],
            [
                [m.name, _hex(m.start), _hex(m.finish), m.tiebreak, m.dispatched, m.served]
                for m in self.active.values()
            ],
        ]

    def import_state(self, state: list[Any], members: Mapping[Any, Member]) -> None:
        """Restore ``export_state``; ``members`` are the active members by name
        (the same set as when it was exported)."""
        vtime, self.activations, resting, tags = state
        self.pending = 0
        self.vtime = int(vtime, 16)
        self.resting = {name: int(start, 16) for name, start in resting}
        self.active = {}
        self.weight_sum = self.unit = 0
        for name, start, finish, tiebreak, dispatched, served in tags:
            member = members[name]
            member.start, member.finish = int(start, 16), int(finish, 16)
            member.tiebreak = tiebreak
            member.dispatched, member.served = dispatched, served
            self.active[name] = member
            self._reweigh(member.weight)
        self.eligible, self.waiting = [], []
        for member in self.active.values():
            self._place(member)
        heapify(self.eligible)
        heapify(self.waiting)


def _hex(value: int) -> str:
    return format(value, "x")
