"""Engine operations that browse and remove single messages: the newest
messages of a queue, a message found by id alone, and cancelling one.

These serve the job face (DESIGN.md: one engine, two faces): a job is looked
up by its id, listed among the recent ones, and cancelled while it waits.
"""

from __future__ import annotations

from collections.abc import Sequence

from kokaq.core.engine_core import MAX_BATCH, EngineCore
from kokaq.core.errors import InvalidArgument, InvalidState, MessageNotFound
from kokaq.core.message import MessageState, MessageView
from kokaq.core.validation import check_id, check_int

__all__ = ["MessageOps"]

_CANCELLABLE = (MessageState.READY, MessageState.DELAYED, MessageState.DEAD)


class MessageOps(EngineCore):
    def list_messages(
        self,
        namespace: str,
        queue: str,
        *,
        states: Sequence[MessageState | str] = (),
        limit: int = 100,
    ) -> list[MessageView]:
        """Up to ``limit`` messages of the queue, newest enqueue first, in the
        ``states`` given (all when empty)."""
        q = self._queue(namespace, queue)
        check_int("limit", limit, 1, MAX_BATCH)
        wanted = _states(states)
        found: list[MessageView] = []
        for message in reversed(q.messages.values()):
            if wanted is None or message.state in wanted:
                found.append(q.view(message))
                if len(found) == limit:
                    break
        return found

    def find_message(self, namespace: str, message_id: str) -> MessageView:
        """A message of the namespace by id alone, whichever queue holds it."""
        ns = self._namespace(namespace)
        check_id("message_id", message_id)
        for q in ns.queues.values():
            message = q.messages.get(message_id)
            if message is not None:
                return q.view(message)
        raise MessageNotFound(namespace, "*", message_id)

    def cancel_message(
        self, namespace: str, queue: str, message_id: str, *, now: int
    ) -> MessageView:
        """Remove a message that waits (ready, delayed) or is dead, and return
        what it was. A leased message belongs to its consumer until it comes
        back; a succeeded one is already done."""
        self._clock(now)
        q = self._queue(namespace, queue)
        check_id("message_id", message_id)
        message = q.get(message_id)
        if message.state not in _CANCELLABLE:
            raise InvalidState(message_id, message.state.value, "ready, delayed or dead")
        view = q.view(message)
        q.remove(message)
        return view


def _states(states: Sequence[MessageState | str]) -> frozenset[MessageState] | None:
    if isinstance(states, str) or not isinstance(states, Sequence):
        raise InvalidArgument("states", "must be a list of message states")
    if not states:
        return None
    try:
        return frozenset(MessageState(state) for state in states)
    except ValueError:
        names = ", ".join(s.value for s in MessageState)
        raise InvalidArgument("states", f"each must be one of {names}") from None
