from __future__ import annotations

import pickle
from typing import Any

import pytest

from kokaq.core import errors
from kokaq.core.errors import (
    ConfigError,
    InvalidArgument,
    KokaqError,
    LockLost,
    NotLeader,
    QueueFull,
    QueueNotFound,
    error_classes,
)

SAMPLES: dict[str, dict[str, Any]] = {
    "InvalidArgument": {"field": "priority", "reason": "too big"},
    "ConfigError": {"field": "backoff.factor", "reason": "must be >= 1"},
    "PayloadTooLarge": {"field": "payload", "size": 10, "limit": 5},
    "NamespaceNotFound": {"namespace": "ns"},
    "QueueNotFound": {"namespace": "ns", "queue": "q"},
    "ScheduleNotFound": {"namespace": "ns", "schedule": "daily"},
    "MessageNotFound": {"namespace": "ns", "queue": "q", "message_id": "m"},
    "NamespaceExists": {"namespace": "ns"},
    "QueueExists": {"namespace": "ns", "queue": "q"},
    "MessageExists": {"namespace": "ns", "queue": "q", "message_id": "m"},
    "NotEmpty": {"namespace": "ns", "queue": "q", "count": 3},
    "LockLost": {"message_id": "m"},
    "InvalidState": {"message_id": "m", "state": "ready", "expected": "dead"},
    "ResourceExhausted": {"reason": "too many queues"},
    "QueueFull": {"namespace": "ns", "queue": "q", "limit": 5, "fairness_key": "t1"},
    "NotLeader": {"leader_hint": "10.0.0.2:9000"},
    "Unavailable": {"reason": "no answer from the Raft log"},
    "Unauthenticated": {"reason": "unknown API key"},
    "PermissionDenied": {"reason": "a consumer key may not make this call"},
}


@pytest.mark.parametrize("name", sorted(error_classes()))
def test_every_error_rebuilds_from_its_details(name: str) -> None:
    cls = error_classes()[name]
    error = cls(**SAMPLES.get(name, {}))
    assert isinstance(error, KokaqError)
    assert cls(**error.details()) == error
    assert pickle.loads(pickle.dumps(error)) == error
    assert error.message


def test_every_error_class_has_a_sample_or_no_fields() -> None:
    for name, cls in error_classes().items():
        assert cls.fields == () or name in SAMPLES, name


def test_errors_carry_their_data() -> None:
    error = QueueNotFound("ns", "q")
    assert (error.namespace, error.queue) == ("ns", "q")
    assert "ns/q" in str(error)
    assert NotLeader("n2:9000").leader_hint == "n2:9000"
    assert QueueFull("ns", "q", 5, "tenant").fairness_key == "tenant"
    assert LockLost("m1").details() == {"message_id": "m1"}


def test_hierarchy() -> None:
    assert issubclass(ConfigError, InvalidArgument)
    assert issubclass(errors.PayloadTooLarge, InvalidArgument)
    assert issubclass(LockLost, errors.FailedPrecondition)
    assert issubclass(NotLeader, errors.Unavailable)
    assert ConfigError("a", "b") != InvalidArgument("a", "b")
