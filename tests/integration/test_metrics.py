"""/metrics of a real node after a known workload, parsed with prometheus_client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kokaq.client import Client
from kokaq.core import Band, QueueConfig, QueueNotFound, SchedulingPolicy
from tests.integration.nodes import NodeProcess
from tests.integration.scrape import scrape, value


@pytest.fixture
def fresh_node(tmp_path: Path) -> Iterator[NodeProcess]:
    node = NodeProcess(str(tmp_path)).start()
    yield node
    node.kill()


def test_metrics_after_a_known_workload(fresh_node: NodeProcess) -> None:
    bands = (Band(0, 99, weight=3), Band(100, 2**64 - 1, weight=1))
    with (
        Client(fresh_node.grpc) as client,
        httpx.Client(base_url=f"http://{fresh_node.http}") as http,
    ):
        client.create_namespace("m")
        client.create_queue("m", "q", QueueConfig(scheduling=SchedulingPolicy(bands=bands)))
        queue = client.queue("m", "q")
        for i in range(10):
            queue.enqueue(f"job {i}".encode(), priority=5 if i % 2 else 500)
        leased = queue.dequeue(max_count=4)
        leased[0].ack()
        leased[1].ack()
        leased[2].nack("retry me")
        leased[3].nack("give up", dead_letter=True)
        with pytest.raises(QueueNotFound):
            client.get_queue("m", "absent")
        assert http.get("/v1/jobs/absent", params={"namespace": "m"}).status_code == 404

        samples = scrape(http)
    at = {"namespace": "m", "queue": "q"}
    expected_totals = {"enqueued": 10, "dequeued": 4, "acked": 2, "nacked": 2, "dead_lettered": 1,
                       "expired": 0}  # fmt: skip
    for name, count in expected_totals.items():
        assert value(samples, f"kokaq_messages_{name}_total", **at) == count, name
    expected_states = {"ready": 6, "delayed": 1, "leased": 0, "succeeded": 2, "dead": 1}
    for state, count in expected_states.items():
        assert value(samples, "kokaq_queue_messages", state=state, **at) == count, state
    assert value(samples, "kokaq_queue_oldest_ready_age_seconds", **at) > 0

    # Four first leases; the weighted bands served 3 of the low band per 1 of the high.
    waits = {
        band: value(samples, "kokaq_lease_wait_seconds_count", band=band, **at) for band in "01"
    }
    assert waits == {"0": 3, "1": 1}
    for band in "01":
        ratio = value(samples, "kokaq_scheduler_share_ratio", band=band, key="", **at)
        assert ratio == pytest.approx(1.0)  # served exactly to weight: 3/4 and 1/4

    assert value(samples, "kokaq_raft_is_leader") == 1
    assert value(samples, "kokaq_raft_applied_index") == value(samples, "kokaq_raft_commit_index")
    assert value(samples, "kokaq_raft_term") >= 1
    # Every write went through the journal, and no entry was synced twice.
    appends = value(samples, "kokaq_raft_journal_appends_total")
    assert appends >= 1 and 1 <= value(samples, "kokaq_raft_journal_syncs_total") <= appends
    assert value(samples, "kokaq_grpc_requests_total", method="Enqueue", code="OK") == 10
    # Each of those went through the log once; batches carried one write or more.
    assert value(samples, "kokaq_commit_operations_total", operation="Enqueue") == 10
    proposed = sum(v for (n, _), v in samples.items() if n == "kokaq_commit_operations_total")
    assert 1 <= value(samples, "kokaq_commit_batches_total") <= proposed
    assert value(samples, "kokaq_grpc_requests_total", method="GetQueue", code="NOT_FOUND") == 1
    assert value(samples, "kokaq_grpc_request_duration_seconds_count", method="Dequeue") == 1
    route = {"method": "GET", "route": "/v1/jobs/{job_id}", "status": "404"}
    assert value(samples, "kokaq_http_requests_total", **route) == 1
    assert value(samples, "kokaq_worker_streams") == 0
    assert value(samples, "kokaq_worker_jobs_given_back_total") == 0  # no stream broke
    # Starting up and this workload allocated far past 1,000 objects: young
    # collections ran, each counted once in its histogram.
    young = value(samples, "kokaq_gc_pause_seconds_count", generation="0")
    assert young >= 1
    assert value(samples, "kokaq_gc_pause_seconds_bucket", generation="0", le="+Inf") == young
    assert value(samples, "kokaq_gc_pause_seconds_sum", generation="0") > 0


def test_metrics_can_require_a_key(tmp_path: Path) -> None:
    node = NodeProcess(str(tmp_path), "--api-key", "readkey01:consumer", "--metrics-need-key")
    node.start()
    try:
        with httpx.Client(base_url=f"http://{node.http}") as http:
            refused = http.get("/metrics")
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "UNAUTHENTICATED"
            allowed = http.get("/metrics", headers={"X-API-Key": "readkey01"})
            assert allowed.status_code == 200 and "kokaq_raft_term" in allowed.text
    finally:
        node.kill()
