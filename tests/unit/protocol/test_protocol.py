"""The wire contract: generated code up to date, every error mapped and rebuilt."""

from __future__ import annotations

import filecmp
import subprocess
from pathlib import Path

import grpc
import pytest

from kokaq.core import (
    Band,
    EnqueueResult,
    MessageFilter,
    MessageSpec,
    MessageState,
    QueueConfig,
    RetryPosition,
    SchedulingPolicy,
)
from kokaq.core import errors as e
from kokaq.core.errors import error_classes
from kokaq.protocol import convert as cv
from kokaq.protocol.errors import (
    STATUS_TABLE,
    error_detail,
    error_from_detail,
    error_from_status,
    status_for,
)
from kokaq.protocol.v1 import kokaq_pb2 as pb
from tests.unit.core.test_errors import SAMPLES

ROOT = Path(__file__).resolve().parents[3]


def test_committed_generated_code_is_current(tmp_path: Path) -> None:
    subprocess.run(["bash", str(ROOT / "scripts/gen-protocol"), str(tmp_path)], check=True)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["kokaq_pb2.py", "kokaq_pb2.pyi", "kokaq_pb2_grpc.py", "kokaq_pb2_grpc.pyi"]
    _, mismatch, missing = filecmp.cmpfiles(tmp_path, ROOT / "protocol/v1", names, shallow=False)
    assert (mismatch, missing) == ([], []), "run scripts/gen-protocol and commit the result"


@pytest.mark.parametrize("name", sorted(error_classes()))
def test_every_error_crosses_the_wire_as_itself(name: str) -> None:
    error = error_classes()[name](**SAMPLES.get(name, {}))
    detail = pb.ErrorDetail.FromString(error_detail(error).SerializeToString())
    rebuilt = error_from_status(status_for(error).grpc, "", detail.SerializeToString())
    assert type(rebuilt) is type(error)
    assert rebuilt == error
    assert rebuilt.message == error.message


def test_status_table_codes() -> None:
    expected = {
        e.InvalidArgument("f", "r"): (grpc.StatusCode.INVALID_ARGUMENT, 400),
        e.PayloadTooLarge("payload", 10, 5): (grpc.StatusCode.INVALID_ARGUMENT, 413),
        e.QueueNotFound("n", "q"): (grpc.StatusCode.NOT_FOUND, 404),
        e.QueueExists("n", "q"): (grpc.StatusCode.ALREADY_EXISTS, 409),
        e.LockLost("m"): (grpc.StatusCode.FAILED_PRECONDITION, 409),
        e.QueueFull("n", "q", 3): (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        e.NotLeader("x:1"): (grpc.StatusCode.UNAVAILABLE, 503),
        e.Unauthenticated("no"): (grpc.StatusCode.UNAUTHENTICATED, 401),
        e.PermissionDenied("no"): (grpc.StatusCode.PERMISSION_DENIED, 403),
        e.KokaqError("bug"): (grpc.StatusCode.INTERNAL, 500),
    }
    for error, (code, http) in expected.items():
        assert tuple(status_for(error)) == (code, http), error
    assert STATUS_TABLE[-1][0] is e.KokaqError


def test_transport_failures_without_a_trailer_map_to_classes() -> None:
    assert isinstance(error_from_status(grpc.StatusCode.UNAVAILABLE, "down", None), e.Unavailable)
    assert isinstance(
        error_from_status(grpc.StatusCode.DEADLINE_EXCEEDED, "slow", None), e.Unavailable
    )
    assert isinstance(
        error_from_status(grpc.StatusCode.UNAUTHENTICATED, "key", None), e.Unauthenticated
    )
    garbled = error_from_status(grpc.StatusCode.NOT_FOUND, "x", b"\xff\xff")
    assert type(garbled) is e.KokaqError
    unknown = error_from_detail(pb.ErrorDetail(type="FromTheFuture", message="new"))
    assert type(unknown) is e.KokaqError and unknown.message == "new"


def test_queue_config_round_trips_through_the_wire() -> None:
    config = QueueConfig(
        visibility_timeout_ms=5_000,
        default_ttl_ms=60_000,
        max_priority=2**64 - 1,
        max_length=10,
        scheduling=SchedulingPolicy(
            bands=(Band(0, 9, 1), Band(10, 2**64 - 1, 4)),
            key_weights={"gold": 5},
            aging_interval_ms=1000,
            retry_position=RetryPosition.BEHIND,
            max_per_key=3,
        ),
    )
    message = cv.dict_to_message(config.to_dict(), pb.QueueConfig())
    back = cv.queue_config_from_proto(pb.QueueConfig.FromString(message.SerializeToString()))
    assert back == config
    # Fields left out take the defaults.
    assert cv.queue_config_from_proto(pb.QueueConfig()) == QueueConfig()


def test_spec_and_filter_round_trip() -> None:
    spec = MessageSpec(payload=b"x", priority=7, ttl_ms=5, dedup_key="d", fairness_key="t", cost=3)
    assert cv.spec_from_proto(cv.spec_to_proto(spec)) == spec
    where = MessageFilter(fairness_key="t", min_priority=1, states=(MessageState.DEAD,))
    assert cv.filter_from_proto(cv.filter_to_proto(where)) == where
    with pytest.raises(e.InvalidArgument) as caught:
        cv.filter_from_proto(pb.MessageFilter(states=[99]))  # type: ignore[list-item]  # a state from the future
    assert caught.value.field.startswith("where.states")


def test_an_error_without_data_keeps_its_message() -> None:
    for error in (e.FailedPrecondition("the leader cannot remove itself"), e.KokaqError("boom")):
        rebuilt = error_from_detail(error_detail(error))
        assert type(rebuilt) is type(error) and rebuilt.message == error.message


def test_a_batch_of_enqueue_results_converts_as_each_one_does() -> None:
    results = [
        EnqueueResult("m1", MessageState.READY, 1_000, False),
        EnqueueResult("m2", MessageState.DELAYED, 5_000, False),
        EnqueueResult("m3", None, None, True),  # a duplicate whose first message is gone
    ]
    built = cv.enqueue_results_to_proto(results)
    assert list(built.results) == [cv.enqueue_result_to_proto(r) for r in results]
    assert not built.results[2].HasField("visible_at")
    assert [cv.enqueue_result_from_proto(r) for r in built.results] == results
