"""The worker's side of a Work stream: settles matched to their answers by
``settle_id``; when the stream breaks or the answer does not come, None, so
that the settler sends them again by SettleMany."""

from __future__ import annotations

import asyncio

import pytest

from kokaq.client import worker
from kokaq.protocol.v1 import kokaq_pb2 as pb

ACK = pb.SettleRequest(ack=pb.LockRef(namespace="ns", queue="q", message_id="m", lock_id="l"))


class Call:
    """A Work call that records what the worker writes."""

    def __init__(self) -> None:
        self.written: list[pb.WorkRequest] = []

    async def write(self, request: pb.WorkRequest) -> None:
        self.written.append(request)


def test_answers_are_matched_by_settle_id() -> None:
    async def scenario() -> None:
        call = Call()
        stream = worker._WorkStream(call)
        first = asyncio.ensure_future(stream.settle([ACK]))
        second = asyncio.ensure_future(stream.settle([ACK, ACK]))
        await asyncio.sleep(0)
        ids = [request.settle_id for request in call.written]
        assert len(set(ids)) == 2 and [len(r.settles) for r in call.written] == [1, 2]
        # Answered out of order: each goes to its own settles.
        lost = pb.SettleOutcome(error=pb.ErrorDetail(type="LockLost"))
        stream.answered(pb.WorkEvent(settle_id=ids[1], settled=[lost, lost]))
        stream.answered(pb.WorkEvent(settle_id=ids[0], settled=[pb.SettleOutcome(outcome="acked")]))
        assert [o.outcome for o in await first or []] == ["acked"]
        assert [o.error.type for o in await second or []] == ["LockLost", "LockLost"]

    asyncio.run(scenario())


def test_a_broken_stream_answers_none_and_takes_no_more() -> None:
    async def scenario() -> None:
        call = Call()
        stream = worker._WorkStream(call)
        waiting = asyncio.ensure_future(stream.settle([ACK]))
        await asyncio.sleep(0)
        stream.broke()
        assert await waiting is None
        assert await stream.settle([ACK]) is None
        assert len(call.written) == 1  # nothing written after the break
        assert stream.ended.is_set()

    asyncio.run(scenario())


def test_an_answer_that_does_not_come_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "_SETTLE_ANSWER_SECONDS", 0.05)

    async def scenario() -> None:
        stream = worker._WorkStream(Call())
        assert await stream.settle([ACK]) is None
        stream.answered(pb.WorkEvent(settle_id=1, settled=[pb.SettleOutcome(outcome="acked")]))

    asyncio.run(scenario())
