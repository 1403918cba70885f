"""Every RPC through the SDK, good and bad input, on both transports."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import grpc
import pytest

from kokaq.client import Client, calls
from kokaq.core import (
    MAX_PRIORITY,
    BackoffPolicy,
    Band,
    FailureReason,
    InvalidArgument,
    InvalidState,
    LockLost,
    MessageFilter,
    MessageNotFound,
    MessageSpec,
    MessageState,
    NackOutcome,
    NamespaceConfig,
    NamespaceExists,
    NamespaceNotFound,
    NotEmpty,
    PayloadTooLarge,
    QueueConfig,
    QueueExists,
    QueueFull,
    QueueNotFound,
    SchedulingPolicy,
)
from kokaq.protocol.v1 import kokaq_pb2 as pb
from kokaq.server.operations import OPERATIONS
from tests.integration.nodes import NodeProcess, wait_until


def fresh(client: Client, config: QueueConfig | None = None) -> tuple[str, str]:
    namespace = f"ns-{uuid.uuid4().hex[:8]}"
    client.create_namespace(namespace)
    client.create_queue(namespace, "q", config)
    return namespace, "q"


def test_namespace_and_queue_lifecycle(client: Client) -> None:
    name = f"ns-{uuid.uuid4().hex[:8]}"
    info = client.create_namespace(name, NamespaceConfig(description="team a", max_queues=2))
    assert info.config.description == "team a" and info.queue_count == 0
    with pytest.raises(NamespaceExists):
        client.create_namespace(name)
    assert name in [n.name for n in client.list_namespaces()]
    assert client.update_namespace(name, NamespaceConfig(max_queues=5)).config.max_queues == 5
    queue = client.create_queue(name, "orders", QueueConfig(max_deliveries=3))
    assert queue.config.max_deliveries == 3
    with pytest.raises(QueueExists):
        client.create_queue(name, "orders")
    assert [q.name for q in client.list_queues(name)] == ["orders"]
    updated = client.update_queue(name, "orders", QueueConfig(visibility_timeout_ms=5_000))
    assert updated.config.visibility_timeout_ms == 5_000
    assert client.get_queue(name, "orders").config == updated.config
    client.queue(name, "orders").enqueue(b"x")
    with pytest.raises(NotEmpty):
        client.delete_namespace(name)
    assert client.queue(name, "orders").purge() == 1
    client.delete_queue(name, "orders")
    client.delete_namespace(name)
    with pytest.raises(NamespaceNotFound):
        client.get_namespace(name)


def test_an_extend_retried_after_a_lost_answer_extends_once(client: Client) -> None:
    namespace, name = fresh(client)
    q = client.queue(namespace, name)
    q.enqueue(b"x")
    (job,) = q.dequeue(visibility_timeout_ms=10_000)
    held = job.lock_deadline
    assert held is not None
    sent = calls.extend(job.message, 5_000, held)  # what job.extend(5_000) sends
    assert isinstance(sent.request, pb.ExtendRequest) and sent.request.from_deadline == held
    assert client.run(sent) == held + 5_000  # its answer is lost...
    assert job.extend(5_000) == held + 5_000  # ...so it goes again: it extends once
    assert job.extend(5_000) == held + 10_000  # the next one counts from the new deadline


def test_message_lifecycle(client: Client) -> None:
    namespace, name = fresh(client, QueueConfig(max_deliveries=2))
    q = client.queue(namespace, name)
    low = q.enqueue(b"low", priority=1)
    high = q.enqueue("high", priority=MAX_PRIORITY, headers={"k": "v"})
    assert low.state is MessageState.READY and not high.duplicate
    assert [m.id for m in q.peek(2)] == [high.message_id, low.message_id]
    (job,) = q.dequeue()
    assert job.id == high.message_id and job.payload == b"high"
    assert job.message.headers is not None and job.message.headers.user == {"k": "v"}
    deadline = job.extend(5_000)
    assert deadline == job.lock_deadline
    assert job.set_visibility_timeout(60_000) > 0
    assert job.refresh() > 0
    job.ack()
    assert q.get(job.id).state is MessageState.SUCCEEDED
    job.ack()  # the same lease acked again (a retry after a lost answer): still fine
    with pytest.raises(LockLost):
        job.nack("too late")
    assert q.stats().totals["acked"] == 1
    (second,) = q.dequeue(visibility_timeout_ms=2_000)
    result = second.nack("boom", reason=FailureReason.PROCESSING_ERROR, delay_ms=0)
    assert result.outcome is NackOutcome.REQUEUED
    (again,) = q.dequeue()
    assert again.id == low.message_id
    assert again.nack("boom again").outcome is NackOutcome.DEAD_LETTERED  # 2 deliveries used
    page = q.list_dead()
    assert [m.id for m in page.messages] == [low.message_id]
    assert page.messages[0].last_error == "boom again"
    assert q.redrive() == 1
    (back,) = q.dequeue()
    assert back.release(delay_ms=0) >= 0
    assert q.reprioritize(9, message_id=back.id) == 1
    assert q.get(back.id).priority == 9
    assert q.reprioritize(3, where=MessageFilter(min_priority=5)) == 1
    stats = q.stats()
    assert (stats.ready, stats.succeeded, stats.dead) == (1, 1, 0)
    (last,) = q.dequeue()
    assert last.nack(dead_letter=True).outcome is NackOutcome.DEAD_LETTERED
    assert q.purge_dead() == 1


def test_batches_dedup_and_weighted_dequeue(client: Client) -> None:
    namespace, name = fresh(client)
    client.create_queue(namespace, "other")
    q = client.queue(namespace, name)
    results = q.enqueue_many([b"a", MessageSpec(payload=b"b", dedup_key="k"), "c"])
    assert len({r.message_id for r in results}) == 3
    repeat = q.enqueue(b"b again", dedup_key="k")
    assert repeat.duplicate and repeat.message_id == results[1].message_id
    client.queue(namespace, "other").enqueue(b"o")
    leased = client.dequeue(namespace, {name: 3, "other": 1}, max_count=10)
    assert sorted(m.payload for m in leased) == [b"a", b"b", b"c", b"o"]
    mine = [m for m in leased if m.message.queue == name]
    assert q.ack_many(mine) == [None, None, None]
    forged = mine[1].message._replace(lock_id="not-the-lock")
    again, wrong = q.ack_many([mine[0], forged])  # each item succeeds or fails alone
    assert again is None and isinstance(wrong, LockLost)  # the same lease again: fine


def test_bad_input_is_named_and_changes_nothing(client: Client) -> None:
    namespace, name = fresh(client, QueueConfig(max_payload_bytes=10, max_length=2))
    q = client.queue(namespace, name)
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: client.create_namespace("bad name!"), "namespace"),
        (lambda: client.create_queue(namespace, ""), "queue"),
        (lambda: q.enqueue(b"x", priority=-1), "priority"),
        (lambda: q.enqueue(b"x", delay_ms=-5), "delay_ms"),
        (lambda: q.enqueue(b"x", delay_ms=5, run_at=10), "run_at"),
        (lambda: q.dequeue(0 + 1001), "max_count"),
        (lambda: q.dequeue(visibility_timeout_ms=10), "visibility_timeout_ms"),
        (lambda: q.peek(5000), "count"),
        (lambda: q.enqueue_many([b"ok", MessageSpec(payload=b"x", cost=0)]), "messages[1].cost"),
        (lambda: q.enqueue_many([b"x"] * 1001), "messages"),
        (
            lambda: client.create_queue(namespace, "z", QueueConfig(max_deliveries=-1)),
            "max_deliveries",
        ),
        (lambda: client.dequeue(namespace, {}), "queues"),
        (lambda: q.reprioritize(1), "target"),
    ]
    for call, field in cases:
        with pytest.raises(InvalidArgument) as caught:
            call()
        assert caught.value.field == field, (field, caught.value)
    with pytest.raises(PayloadTooLarge):
        q.enqueue(b"x" * 11)
    with pytest.raises(QueueNotFound):
        client.queue(namespace, "missing").enqueue(b"x")
    assert q.stats().ready == 0  # nothing half-applied
    q.enqueue_many([b"1", b"2"])
    with pytest.raises(QueueFull):
        q.enqueue(b"3")
    (job,) = q.dequeue()
    forged = job.message._replace(lock_id="not-the-lock")
    with pytest.raises(LockLost):
        client.run(calls.ack(forged))
    with pytest.raises(InvalidArgument) as caught:
        client.run(calls.ack(job.message._replace(lock_id="bad lock!")))
    assert caught.value.field == "lock_id"
    assert q.stats().leased == 1


def test_dead_letter_pages_cross_the_wire(client: Client) -> None:
    """DLQ cursors are 128-bit: they travel as opaque strings."""
    namespace, queue = fresh(client, QueueConfig(max_deliveries=1))
    q = client.queue(namespace, queue)
    ids = {r.message_id for r in q.enqueue_many([b"a", b"b", b"c"])}
    for job in q.dequeue(3):
        job.nack("failed")
    first = q.list_dead(limit=2)
    assert len(first.messages) == 2 and first.next_cursor is not None
    rest = q.list_dead(limit=2, after=first.next_cursor)
    assert len(rest.messages) == 1 and rest.next_cursor is None
    assert {m.id for m in first.messages + rest.messages} == ids
    with pytest.raises(InvalidArgument) as caught:
        q.list_dead(after=-1)
    assert caught.value.field == "after"


def test_cluster_status_of_a_single_node(client: Client) -> None:
    status = client.cluster_status()
    assert status.role == "leader" and status.has_quorum and status.members == []
    assert status.leader is not None and status.term >= 1


def test_strong_reads_go_through_the_log(node: NodeProcess) -> None:
    with Client(node.grpc) as leader_reads, Client(node.grpc, consistency="strong") as strong:
        namespace, queue = fresh(leader_reads)
        leader_reads.queue(namespace, queue).enqueue(b"x")

        def applied() -> int:
            return leader_reads.cluster_status().applied_index

        # Settle what a fresh node writes on its own: its announce, the read barrier.
        wait_until(lambda: leader_reads.cluster_status().leader_grpc is not None)
        leader_reads.list_namespaces()
        before = applied()
        assert leader_reads.queue(namespace, queue).stats().ready == 1
        assert applied() == before  # a leader read adds no log entry
        assert strong.queue(namespace, queue).stats().ready == 1
        assert strong.get_queue(namespace, queue).name == queue
        assert applied() >= before + 2  # each strong read took a log entry
    with pytest.raises(InvalidArgument) as caught:
        Client(node.grpc, consistency="eventual")
    assert caught.value.field == "consistency"


def test_an_unknown_consistency_is_refused_by_the_node(node: NodeProcess) -> None:
    with grpc.insecure_channel(node.grpc) as channel:
        list_namespaces = channel.unary_unary(
            f"/kokaq.v1.{OPERATIONS['ListNamespaces'].service}/ListNamespaces",
            request_serializer=pb.ListNamespacesRequest.SerializeToString,
            response_deserializer=pb.ListNamespacesResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as caught:
            list_namespaces(
                pb.ListNamespacesRequest(), metadata=(("x-kokaq-consistency", "eventual"),)
            )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "consistency" in (caught.value.details() or "")


def test_list_find_and_cancel_messages(client: Client) -> None:
    namespace, name = fresh(client)
    queue = client.queue(namespace, name)
    first, second, third = (queue.enqueue(f"m{i}".encode()).message_id for i in range(3))
    (leased,) = queue.dequeue()
    assert leased.id == first
    newest = queue.list_messages()
    assert [m.id for m in newest] == [third, second, first]
    assert [m.id for m in queue.list_messages(["leased"], limit=5)] == [first]
    assert [m.id for m in queue.list_messages([MessageState.READY], limit=1)] == [third]
    with pytest.raises(InvalidArgument) as raised:
        queue.list_messages(["waiting"])
    assert raised.value.field == "states"
    with pytest.raises(InvalidArgument) as raised:
        queue.list_messages(limit=1001)
    assert raised.value.field == "limit"

    client.create_queue(namespace, "other")
    found = client.find_message(namespace, second)
    assert (found.queue, found.payload) == (name, b"m1")
    with pytest.raises(MessageNotFound):
        client.find_message(namespace, "no-such-id")

    assert queue.cancel(second).state is MessageState.READY
    with pytest.raises(MessageNotFound):
        queue.get(second)
    with pytest.raises(InvalidState) as state:
        queue.cancel(first)
    assert state.value.state == "leased"
    assert queue.stats().ready == 1


def test_scheduling_stats_report_bands_and_keys(client: Client) -> None:
    bands = (Band(0, 9, weight=1), Band(10, MAX_PRIORITY, weight=2))
    namespace, name = fresh(client, QueueConfig(scheduling=SchedulingPolicy(bands=bands)))
    queue = client.queue(namespace, name)
    for i in range(9):  # three tenants in the high band, one flow in the low band
        queue.enqueue(b"x", priority=20, fairness_key=f"tenant-{i % 3}")
        queue.enqueue(b"x", priority=1)
    queue.dequeue(max_count=9)
    stats = queue.scheduling_stats()
    assert [(b.band, b.weight, b.dispatched) for b in stats.bands] == [(0, 1, 3), (1, 2, 6)]
    assert stats.bands[1].configured_share == pytest.approx(2 / 3)
    assert stats.bands[1].achieved_share == pytest.approx(2 / 3)
    tenants = [(k.band, k.key, k.dispatched, k.ready) for k in stats.keys if k.key]
    assert sorted(tenants) == [(1, f"tenant-{i}", 2, 1) for i in range(3)]  # equal weights
    with pytest.raises(InvalidArgument) as raised:
        queue.scheduling_stats(key_limit=0)
    assert raised.value.field == "key_limit"


def test_a_message_carries_its_own_backoff(client: Client) -> None:
    namespace, name = fresh(client)
    queue = client.queue(namespace, name)
    own = BackoffPolicy(base_ms=250, factor=4.0, cap_ms=10_000)
    sent = queue.enqueue(b"x", backoff=own)
    assert queue.get(sent.message_id).backoff == own
    (leased,) = queue.dequeue()
    outcome = leased.nack("retry")
    assert outcome.visible_at is not None
    assert 240 <= outcome.visible_at - queue.get(sent.message_id).updated_at <= 260
    with pytest.raises(InvalidArgument) as raised:
        queue.enqueue(b"x", backoff=BackoffPolicy(factor=0.5))
    assert raised.value.field == "backoff.factor"
