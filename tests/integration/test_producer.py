"""The batching Producer, against a real node and in process."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import CancelledError
from typing import Any

import pytest

from kokaq.client import Client, Producer
from kokaq.client.testing import InProcessTransport
from kokaq.core import (
    FailedPrecondition,
    InvalidArgument,
    MessageState,
    QueueConfig,
    QueueNotFound,
)
from tests.integration.test_sdk import fresh


class CountingTransport(InProcessTransport):
    """The in-process transport, remembering the size of every batch it carried."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def call(self, name: str, request: Any) -> Any:
        if name == "EnqueueBatch":
            self.batches.append(len(request.messages))
        return super().call(name, request)


@pytest.fixture(params=["node", "in_process"])
def sync_client(request: pytest.FixtureRequest) -> Iterator[Client]:
    if request.param == "node":
        c = Client(request.getfixturevalue("node").grpc)
    else:
        c = Client(transport=InProcessTransport())
    yield c
    c.close()


def test_every_message_is_acknowledged_once(sync_client: Client) -> None:
    namespace, queue = fresh(sync_client)
    with Producer(sync_client, namespace, queue, batch_size=200) as producer:
        futures = [producer.send(f"m{i}", priority=i % 7) for i in range(3_000)]
    results = [f.result(timeout=0) for f in futures]  # all settled when the block ends
    assert len({r.message_id for r in results}) == 3_000
    assert not any(r.duplicate for r in results)
    q = sync_client.queue(namespace, queue)
    assert q.stats().ready == 3_000
    assert q.get(results[42].message_id).payload == b"m42"


def test_batches_fill_to_batch_size_and_linger_sends_the_rest() -> None:
    transport = CountingTransport()
    client = Client(transport=transport)
    namespace, queue = fresh(client)
    producer = Producer(client, namespace, queue, batch_size=100, linger_ms=60_000)
    futures = [producer.send(b"x") for _ in range(250)]
    futures[199].result(timeout=10)  # two full batches leave without waiting
    assert transport.batches == [100, 100]
    assert not futures[249].done()  # the last 50 linger...
    producer.flush()  # ...until a flush
    assert transport.batches == [100, 100, 50]
    producer.close()

    quick = Producer(client, namespace, queue, batch_size=100, linger_ms=20)
    quick.send(b"alone").result(timeout=10)  # no flush: the linger sends it
    assert transport.batches[-1] == 1
    quick.close()


def test_one_bad_message_fails_alone(sync_client: Client) -> None:
    namespace, queue = fresh(sync_client, QueueConfig(max_priority=10))
    with Producer(sync_client, namespace, queue, linger_ms=60_000) as producer:
        futures = [producer.send(b"ok", priority=p) for p in (1, 2, 50, 3, 99)]
    for bad in (futures[2], futures[4]):
        with pytest.raises(InvalidArgument) as caught:
            bad.result(timeout=0)
        assert caught.value.field == "priority"
    good = [futures[i].result(timeout=0) for i in (0, 1, 3)]
    assert all(r.state is MessageState.READY for r in good)
    assert sync_client.queue(namespace, queue).stats().ready == 3


def test_batch_wide_errors_fail_every_future(sync_client: Client) -> None:
    namespace, _ = fresh(sync_client)
    with Producer(sync_client, namespace, "missing") as producer:
        futures = [producer.send(b"x") for _ in range(5)]
    for future in futures:
        with pytest.raises(QueueNotFound):
            future.result(timeout=0)


def test_bad_arguments_and_closed_producer(sync_client: Client) -> None:
    namespace, queue = fresh(sync_client)
    for options, field in (
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 1001}, "batch_size"),
        ({"linger_ms": -1}, "linger_ms"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"batch_size": 100, "max_buffered": 99}, "max_buffered"),
    ):
        with pytest.raises(InvalidArgument) as caught:
            Producer(sync_client, namespace, queue, **options)
        assert caught.value.field == field
    producer = Producer(sync_client, namespace, queue)
    with pytest.raises(InvalidArgument) as caught:
        producer.send(b"x", priority=-1)  # refused at once, never buffered
    assert caught.value.field == "priority"
    producer.close()
    with pytest.raises(FailedPrecondition):
        producer.send(b"late")
    assert sync_client.queue(namespace, queue).stats().ready == 0


def test_a_cancelled_message_is_not_sent(sync_client: Client) -> None:
    namespace, queue = fresh(sync_client)
    with Producer(sync_client, namespace, queue, linger_ms=60_000) as producer:
        futures = [producer.send(p) for p in (b"a", b"b", b"c")]
        assert futures[1].cancel()
    with pytest.raises(CancelledError):
        futures[1].result(timeout=0)
    payloads = sorted(m.payload for m in sync_client.queue(namespace, queue).peek(10))
    assert payloads == [b"a", b"c"]
