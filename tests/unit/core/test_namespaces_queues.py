from __future__ import annotations

import pytest

from kokaq.core import (
    ConfigError,
    Engine,
    InvalidArgument,
    NamespaceConfig,
    NamespaceExists,
    NamespaceNotFound,
    NotEmpty,
    QueueConfig,
    QueueExists,
    QueueNotFound,
    ResourceExhausted,
)


@pytest.fixture
def engine() -> Engine:
    engine = Engine()
    engine.create_namespace("ns", NamespaceConfig("team"), now=10)
    return engine


def test_namespace_crud(engine: Engine) -> None:
    info = engine.get_namespace("ns")
    assert (info.name, info.config.description, info.created_at, info.queue_count) == (
        "ns",
        "team",
        10,
        0,
    )
    engine.create_namespace("a.b-c_1", now=11)
    assert [n.name for n in engine.list_namespaces()] == ["a.b-c_1", "ns"]
    updated = engine.update_namespace("ns", NamespaceConfig("renamed", 5), now=12)
    assert (updated.config.description, updated.updated_at) == ("renamed", 12)
    engine.delete_namespace("a.b-c_1", now=13)
    assert [n.name for n in engine.list_namespaces()] == ["ns"]


def test_namespace_errors(engine: Engine) -> None:
    with pytest.raises(NamespaceExists):
        engine.create_namespace("ns", now=11)
    with pytest.raises(NamespaceNotFound) as raised:
        engine.get_namespace("nope")
    assert raised.value.namespace == "nope"
    for bad in ["", "x" * 129, "has space", "slash/", "é", 5, None]:
        with pytest.raises(InvalidArgument) as invalid:
            engine.create_namespace(bad, now=11)  # type: ignore[arg-type]
        assert invalid.value.field == "namespace"
    with pytest.raises(ConfigError):
        engine.create_namespace("other", NamespaceConfig(max_queues=-3), now=11)
    assert [n.name for n in engine.list_namespaces()] == ["ns"]


def test_namespace_max_queues(engine: Engine) -> None:
    engine.update_namespace("ns", NamespaceConfig(max_queues=1), now=11)
    engine.create_queue("ns", "q1", now=11)
    with pytest.raises(ResourceExhausted):
        engine.create_queue("ns", "q2", now=11)
    engine.update_namespace("ns", NamespaceConfig(max_queues=None), now=12)
    engine.create_queue("ns", "q2", now=12)
    with pytest.raises(ConfigError, match="max_queues"):
        engine.update_namespace("ns", NamespaceConfig(max_queues=1), now=13)


def test_delete_non_empty_namespace_needs_force(engine: Engine) -> None:
    engine.create_queue("ns", "q", now=11)
    with pytest.raises(NotEmpty) as raised:
        engine.delete_namespace("ns", now=12)
    assert (raised.value.namespace, raised.value.queue, raised.value.count) == ("ns", None, 1)
    assert engine.get_queue("ns", "q").name == "q"
    engine.delete_namespace("ns", force=True, now=12)
    with pytest.raises(NamespaceNotFound):
        engine.get_queue("ns", "q")


def test_queue_crud(engine: Engine) -> None:
    info = engine.create_queue("ns", "q", QueueConfig(max_deliveries=3), now=20)
    assert (info.namespace, info.name, info.config.max_deliveries, info.created_at) == (
        "ns",
        "q",
        3,
        20,
    )
    engine.create_queue("ns", "a", now=21)
    assert [q.name for q in engine.list_queues("ns")] == ["a", "q"]
    assert engine.get_namespace("ns").queue_count == 2
    updated = engine.update_queue("ns", "q", QueueConfig(max_deliveries=1), now=22)
    assert (updated.config.max_deliveries, updated.updated_at) == (1, 22)
    engine.delete_queue("ns", "a", now=23)
    assert [q.name for q in engine.list_queues("ns")] == ["q"]


def test_queue_errors(engine: Engine) -> None:
    engine.create_queue("ns", "q", now=11)
    with pytest.raises(QueueExists):
        engine.create_queue("ns", "q", now=11)
    with pytest.raises(QueueNotFound) as raised:
        engine.get_queue("ns", "nope")
    assert (raised.value.namespace, raised.value.queue) == ("ns", "nope")
    with pytest.raises(NamespaceNotFound):
        engine.create_queue("nope", "q", now=11)
    with pytest.raises(InvalidArgument) as invalid:
        engine.create_queue("ns", "bad name", now=11)
    assert invalid.value.field == "queue"
    with pytest.raises(InvalidArgument) as invalid:
        engine.get_queue("ns", ["list"])  # type: ignore[arg-type]
    assert invalid.value.field == "queue"
    with pytest.raises(ConfigError) as config_error:
        engine.create_queue("ns", "q2", QueueConfig(visibility_timeout_ms=5), now=11)
    assert config_error.value.field == "visibility_timeout_ms"
    with pytest.raises(ConfigError):
        engine.update_queue("ns", "q", QueueConfig(max_length=0), now=12)
    assert engine.get_queue("ns", "q").config == QueueConfig()
    assert [q.name for q in engine.list_queues("ns")] == ["q"]


def test_delete_non_empty_queue_needs_force(engine: Engine) -> None:
    engine.create_queue("ns", "q", now=11)
    engine.enqueue("ns", "q", b"x", message_id="m1", now=12)
    with pytest.raises(NotEmpty) as raised:
        engine.delete_queue("ns", "q", now=13)
    assert raised.value.count == 1
    assert engine.get_message("ns", "q", "m1").payload == b"x"
    with pytest.raises(InvalidArgument):
        engine.delete_queue("ns", "q", force="yes", now=13)  # type: ignore[arg-type]
    engine.delete_queue("ns", "q", force=True, now=13)
    assert engine.list_queues("ns") == []


def test_purge_queue_and_namespace_keep_leased(engine: Engine) -> None:
    engine.create_queue("ns", "q", now=11)
    engine.create_queue("ns", "r", now=11)
    for i in range(3):
        engine.enqueue("ns", "q", b"x", message_id=f"q{i}", now=12)
        engine.enqueue("ns", "r", b"x", message_id=f"r{i}", now=12, delay_ms=1000)
    (leased,) = engine.dequeue("ns", "q", lock_id="L", now=13)
    assert engine.purge_queue("ns", "q", now=14) == 2
    stats = engine.stats("ns", "q")
    assert (stats.ready, stats.leased, stats.oldest_ready_age_ms) == (0, 1, None)
    assert engine.purge_namespace("ns", now=15) == 3
    assert engine.stats("ns", "r").delayed == 0
    engine.ack("ns", "q", leased.id, "L", now=16)
    assert engine.stats("ns", "q").succeeded == 1


def test_now_must_be_integer_milliseconds(engine: Engine) -> None:
    for bad in [-1, 1.5, "10", None, True, 2**60]:
        with pytest.raises(InvalidArgument) as raised:
            engine.create_queue("ns", "q", now=bad)  # type: ignore[arg-type]
        assert raised.value.field == "now"


def test_clock_never_runs_backwards(engine: Engine) -> None:
    engine.create_queue("ns", "q", now=1_000)
    engine.enqueue("ns", "q", b"x", message_id="m1", now=1_000)
    # A command stamped earlier (another leader's clock) is applied at the engine's time.
    engine.enqueue("ns", "q", b"x", message_id="m2", now=500)
    assert engine.get_message("ns", "q", "m2").created_at == 1_000
    assert engine.now == 1_000
