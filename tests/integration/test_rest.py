"""The REST API of a real node: the job face (GoQuorra's), the engine face,
errors in one documented shape, auth, health and the API docs."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.nodes import NodeProcess


@pytest.fixture(scope="module")
def http(node: NodeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{node.http}", timeout=10) as client:
        yield client


def queue_name() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The error body, checked for the documented shape and status."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"code", "type", "message", "field"}
    return dict(error)


def submit(http: httpx.Client, **job: Any) -> dict[str, Any]:
    body = {"type": "email_send", "payload": {"to": "a@example.com"}, **job}
    response = http.post("/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def lease(http: httpx.Client, queue: str, namespace: str = "default") -> dict[str, Any]:
    response = http.post(f"/v1/namespaces/{namespace}/queues/{queue}/dequeue", json={})
    assert response.status_code == 200, response.text
    (message,) = response.json()["messages"]
    return dict(message)


def settle(http: httpx.Client, message: dict[str, Any], verb: str, **body: Any) -> httpx.Response:
    path = f"/v1/namespaces/{message['namespace']}/queues/{message['queue']}"
    path += f"/messages/{message['id']}/{verb}"
    return http.post(path, json={"lock_id": message["lock_id"], **body})


# -- GoQuorra's README, as written apart from the port ---------------------------------------


def test_goquorra_readme_examples(http: httpx.Client) -> None:
    headers = {"Content-Type": "application/json", "X-API-Key": "dev-api-key-change-in-production"}
    created = http.post(
        "/v1/jobs",
        headers=headers,
        content="""{
    "type": "email_send",
    "payload": {
      "to": "user@example.com",
      "subject": "Welcome to GoQuorra!",
      "body": "Your job queue is ready."
    },
    "queue": "default",
    "priority": 10,
    "max_retries": 3
  }""",
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "pending" and body["id"]
    run_at = datetime.fromisoformat(body["run_at"])
    assert abs(run_at.timestamp() - time.time()) < 5

    job = http.get(f"/v1/jobs/{body['id']}", headers=headers).json()
    assert job["type"] == "email_send" and job["status"] == "pending"
    assert (job["attempts"], job["max_retries"], job["priority"]) == (0, 3, 10)
    assert job["payload"]["subject"] == "Welcome to GoQuorra!"
    assert job["created_at"].endswith("Z") and job["updated_at"]

    delayed = http.post(
        "/v1/jobs",
        headers=headers,
        content="""{
    "type": "reminder",
    "payload": {"message": "Time to review your dashboard!"},
    "delay_seconds": 60,
    "max_retries": 5
  }""",
    ).json()
    assert delayed["status"] == "pending"
    assert datetime.fromisoformat(delayed["run_at"]).timestamp() - time.time() > 55
    queues = http.get("/v1/queues", headers=headers).json()["queues"]
    row = {"namespace": "default", "queue": "default", "status": "pending"}
    assert any(r.items() >= row.items() and r["count"] >= 2 for r in queues)


# -- the job lifecycle -------------------------------------------------------------------


def test_job_succeeds_after_a_worker_acks(http: httpx.Client) -> None:
    queue = queue_name()
    job_id = submit(http, queue=queue, priority=5)["id"]
    message = lease(http, queue)
    assert message["id"] == job_id and message["payload"] == '{"to":"a@example.com"}'
    assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "leased"
    assert settle(http, message, "ack").json() == {"acked": True}
    job = http.get(f"/v1/jobs/{job_id}").json()
    assert (job["status"], job["attempts"], job["queue"]) == ("succeeded", 1, queue)
    assert (job["result"], job["result_base64"]) == (None, None)  # acked without one


def test_progress_reported_over_rest_shows_on_the_job(http: httpx.Client) -> None:
    queue = queue_name()
    job_id = submit(http, queue=queue)["id"]
    message = lease(http, queue)
    reported = settle(http, message, "progress", progress={"pct": 50})
    assert reported.status_code == 200, reported.text
    assert reported.json()["lock_deadline"] >= message["lock_deadline"]
    assert http.get(f"/v1/jobs/{job_id}").json()["progress"] == {"pct": 50}
    path = f"/v1/namespaces/default/queues/{queue}/messages/{job_id}"
    assert http.get(path).json()["progress"] == {"pct": 50}
    too_big = settle(http, message, "progress", progress="x" * 5000)
    assert error_of(too_big, 400)["field"] == "progress"
    assert error_of(settle(http, message, "progress"), 400)["field"] == "progress"
    stale = http.post(f"{path}/progress", json={"lock_id": "not-the-lock", "progress": 1})
    assert error_of(stale, 409)["type"] == "LockLost"
    assert http.get(f"/v1/jobs/{job_id}").json()["progress"] == {"pct": 50}  # unchanged


def test_an_ack_s_result_shows_on_the_job_and_the_message(http: httpx.Client) -> None:
    queue = queue_name()
    http.post(
        "/v1/namespaces/default/queues", json={"name": queue, "config": {"max_payload_bytes": 32}}
    )
    ids = [submit(http, queue=queue)["id"] for _ in range(3)]
    leased = [lease(http, queue) for _ in ids]
    # Bad results are refused, naming the field, and the lease is kept.
    for body, status, field in (
        ({"result": "a", "result_base64": "YQ=="}, 400, "result"),
        ({"result_base64": "not base64!"}, 400, "result_base64"),
        ({"result": "x" * 33}, 413, "result"),
        ({"result": 7}, 400, "result"),
    ):
        refused = error_of(settle(http, leased[0], "ack", **body), status)
        assert refused["field"] == field, refused
    assert http.get(f"/v1/jobs/{ids[0]}").json()["status"] == "leased"

    assert settle(http, leased[0], "ack", result='{"sent": 2}').json() == {"acked": True}
    raw = base64.b64encode(b"\xff\x00").decode()
    assert settle(http, leased[1], "ack", result_base64=raw).json() == {"acked": True}
    assert settle(http, leased[2], "ack", result="plain words").json() == {"acked": True}
    jobs = [http.get(f"/v1/jobs/{i}").json() for i in ids]
    assert [(j["status"], j["result"], j["result_base64"]) for j in jobs] == [
        ("succeeded", {"sent": 2}, None),  # JSON: its value
        ("succeeded", None, raw),  # not JSON: base64
        ("succeeded", None, base64.b64encode(b"plain words").decode()),
    ]
    base = f"/v1/namespaces/default/queues/{queue}/messages"
    messages = [http.get(f"{base}/{i}").json() for i in ids]
    assert [(m["result"], m["result_base64"]) for m in messages] == [
        ('{"sent": 2}', base64.b64encode(b'{"sent": 2}').decode()),
        (None, raw),  # not UTF-8: base64 only
        ("plain words", base64.b64encode(b"plain words").decode()),
    ]


def test_a_failed_job_retries_with_goquorra_backoff_then_dies(http: httpx.Client) -> None:
    queue = queue_name()
    job_id = submit(http, queue=queue, max_retries=1)["id"]
    first = lease(http, queue)
    before = time.time()
    outcome = settle(http, first, "nack", error="smtp timeout").json()
    assert outcome["outcome"] == "delayed"
    job = http.get(f"/v1/jobs/{job_id}").json()
    assert (job["status"], job["last_error"], job["attempts"]) == ("failed", "smtp timeout", 1)
    wait = datetime.fromisoformat(job["run_at"]).timestamp() - before
    assert 1.5 < wait < 2.5  # min(2^1 s, 1 h)
    counts = {r["status"]: r["count"] for r in http.get("/v1/queues").json()["queues"]
              if r["queue"] == queue}  # fmt: skip
    assert counts == {"pending": 1, "leased": 0, "succeeded": 0, "dead": 0}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        messages = http.post(f"/v1/namespaces/default/queues/{queue}/dequeue", json={}).json()
        if messages["messages"]:
            break
        time.sleep(0.1)
    (second,) = messages["messages"]
    assert settle(http, second, "nack", error="still down").json()["outcome"] == "dead_lettered"
    job = http.get(f"/v1/jobs/{job_id}").json()
    assert (job["status"], job["attempts"], job["last_error"]) == ("dead", 2, "still down")


def test_a_job_s_own_retry_backoff(http: httpx.Client) -> None:
    queue = queue_name()
    backoff = {"base_seconds": 0.5, "factor": 3.0, "max_seconds": 60, "jitter": 0.0}
    job_id = submit(http, queue=queue, max_retries=5, retry_backoff=backoff)["id"]
    assert http.get(f"/v1/jobs/{job_id}").json()["retry_backoff"] == backoff
    waits = []
    for _ in range(2):
        deadline = time.monotonic() + 10
        while not (leased := http.post(f"/v1/namespaces/default/queues/{queue}/dequeue", json={})
                   .json()["messages"]):  # fmt: skip
            assert time.monotonic() < deadline
            time.sleep(0.05)
        before = time.time()
        assert settle(http, leased[0], "nack", error="later").json()["outcome"] == "delayed"
        run_at = datetime.fromisoformat(http.get(f"/v1/jobs/{job_id}").json()["run_at"])
        waits.append(run_at.timestamp() - before)
    assert 0.3 < waits[0] < 0.8 and 1.3 < waits[1] < 1.8  # 0.5 s, then 1.5 s
    for bad, field in (
        ({"factor": 0.5}, "retry_backoff.factor"),
        ({"base_seconds": 10, "max_seconds": 1}, "retry_backoff.max_seconds"),
        ({"speed": 1}, "retry_backoff.speed"),
    ):
        refused = http.post("/v1/jobs", json={"type": "t", "payload": 1, "retry_backoff": bad})
        assert error_of(refused, 400)["field"] == field


def test_idempotency_key_returns_the_first_job(http: httpx.Client) -> None:
    queue = queue_name()
    first = submit(http, queue=queue, idempotency_key="order-42")
    again = http.post(
        "/v1/jobs", json={"type": "t", "payload": 2, "queue": queue, "idempotency_key": "order-42"}
    )
    assert again.status_code == 200
    assert again.json() == {
        "id": first["id"],
        "status": "pending",
        "run_at": first["run_at"],
        "duplicate": True,
    }


def test_batch_submit_is_all_or_nothing(http: httpx.Client) -> None:
    queue = queue_name()
    jobs = [{"type": "t", "payload": i, "queue": queue, "priority": i} for i in range(5)]
    jobs[4]["idempotency_key"] = "once"
    made = http.post("/v1/jobs/batch", json={"jobs": jobs})
    assert made.status_code == 201, made.text
    created = made.json()["jobs"]
    assert [c["status"] for c in created] == ["pending"] * 5
    assert [http.get(f"/v1/jobs/{c['id']}").json()["payload"] for c in created] == [0, 1, 2, 3, 4]
    again = http.post("/v1/jobs/batch", json={"jobs": [jobs[4]]}).json()["jobs"]
    assert again == [{**created[4], "duplicate": True}]

    bad = [*jobs[:2], {"type": "t", "payload": 1, "queue": queue, "priority": -1}]
    assert (
        error_of(http.post("/v1/jobs/batch", json={"jobs": bad}), 400)["field"]
        == "jobs[2].priority"
    )
    mixed = [jobs[0], {**jobs[1], "queue": "elsewhere"}]
    assert (
        error_of(http.post("/v1/jobs/batch", json={"jobs": mixed}), 400)["field"] == "jobs[1].queue"
    )
    both = [jobs[0], {**jobs[1], "delay_seconds": 1, "run_at": "2030-01-01T00:00:00Z"}]
    assert (
        error_of(http.post("/v1/jobs/batch", json={"jobs": both}), 400)["field"] == "jobs[1].run_at"
    )
    assert error_of(http.post("/v1/jobs/batch", json={"jobs": []}), 400)["field"] == "jobs"
    counts = {r["status"]: r["count"] for r in http.get("/v1/queues").json()["queues"]
              if r["queue"] == queue}  # fmt: skip
    assert counts["pending"] == 5  # nothing of the refused batches got in


def test_list_recent_jobs_by_queue_and_status(http: httpx.Client) -> None:
    queue = queue_name()
    ids = [submit(http, queue=queue, payload=i)["id"] for i in range(3)]
    leased = lease(http, queue)
    listed = http.get("/v1/jobs", params={"queue": queue}).json()["jobs"]
    assert [j["id"] for j in listed] == ids[::-1]
    assert [j["payload"] for j in listed] == [2, 1, 0]
    pending = http.get("/v1/jobs", params={"queue": queue, "status": "pending", "limit": 1})
    assert [j["id"] for j in pending.json()["jobs"]] == [ids[2]]
    held = http.get("/v1/recent", params={"queue": queue, "status": "leased"}).json()["jobs"]
    assert [j["id"] for j in held] == [leased["id"]]
    everywhere = http.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]
    assert set(ids) <= {j["id"] for j in everywhere}
    assert error_of(http.get("/v1/jobs", params={"limit": 0}), 400)["field"] == "limit"
    assert error_of(http.get("/v1/jobs", params={"status": "lost"}), 400)["field"] == "status"


def test_cancel_a_waiting_job_but_not_a_leased_one(http: httpx.Client) -> None:
    queue = queue_name()
    waiting = submit(http, queue=queue, delay_seconds=30)["id"]
    held = submit(http, queue=queue)["id"]
    assert lease(http, queue)["id"] == held
    cancelled = http.post(f"/v1/jobs/{waiting}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert error_of(http.get(f"/v1/jobs/{waiting}"), 404)["type"] == "MessageNotFound"
    refused = error_of(http.post(f"/v1/jobs/{held}/cancel"), 409)
    assert refused["type"] == "InvalidState" and refused["details"]["state"] == "leased"
    assert error_of(http.post("/v1/jobs/nope/cancel"), 404)["code"] == "NOT_FOUND"


def test_dead_letter_queue_list_redrive_purge(http: httpx.Client) -> None:
    queue = queue_name()
    ids = [submit(http, queue=queue, max_retries=0, priority=p)["id"] for p in (1, 9, 5)]
    for _ in ids:
        assert settle(http, lease(http, queue), "nack", error="boom").status_code == 200
    page = http.get("/v1/dlq", params={"queue": queue, "limit": 2}).json()
    assert [j["id"] for j in page["jobs"]] == [ids[1], ids[2]]  # by priority, then death
    assert all(j["status"] == "dead" for j in page["jobs"])
    rest = http.get("/v1/dlq", params={"queue": queue, "after": page["next_cursor"]}).json()
    assert [j["id"] for j in rest["jobs"]] == [ids[0]] and rest["next_cursor"] is None
    redriven = http.post("/v1/dlq/redrive", json={"queue": queue, "ids": [ids[1]]})
    assert redriven.json() == {"count": 1}
    job = http.get(f"/v1/jobs/{ids[1]}").json()
    assert (job["status"], job["attempts"], job["priority"]) == ("pending", 0, 9)
    assert (
        error_of(http.post("/v1/dlq/purge", json={"queue": queue, "ids": []}), 400)["field"]
        == "ids"
    )
    assert http.post("/v1/dlq/purge", json={"queue": queue}).json() == {"count": 2}
    assert http.get("/v1/dlq", params={"queue": queue}).json()["jobs"] == []
    missing = error_of(http.get("/v1/dlq", params={"queue": "no-such-queue"}), 404)
    assert missing["type"] == "QueueNotFound"


def test_bad_job_submissions_are_refused_naming_the_field(http: httpx.Client) -> None:
    cases: list[tuple[Any, str]] = [
        ({"payload": {}}, "type"),
        ({"type": "t"}, "payload"),
        ({"type": "", "payload": 1}, "type"),
        ({"type": "t", "payload": 1, "priority": -1}, "priority"),
        ({"type": "t", "payload": 1, "priority": 2**64}, "priority"),
        ({"type": "t", "payload": 1, "queue": "no spaces"}, "queue"),
        ({"type": "t", "payload": 1, "delay_seconds": -1}, "delay_seconds"),
        (
            {"type": "t", "payload": 1, "delay_seconds": 1, "run_at": "2030-01-01T00:00:00Z"},
            "run_at",
        ),
        ({"type": "t", "payload": 1, "run_at": "tomorrow"}, "run_at"),
        ({"type": "t", "payload": 1, "max_retries": -1}, "max_retries"),
        ({"type": "t", "payload": 1, "ttl_seconds": 0}, "ttl_seconds"),
        ({"type": "t", "payload": 1, "colour": "red"}, "colour"),
        ({"type": "t", "payload": 1, "namespace": "absent"}, "namespace"),
    ]
    for body, field in cases:
        response = http.post("/v1/jobs", json=body)
        if field == "namespace":  # only "default" is made on demand
            assert error_of(response, 404)["type"] == "NamespaceNotFound"
            continue
        assert error_of(response, 400)["field"] == field, body
    assert error_of(http.post("/v1/jobs", content=b"{not json"), 400)["code"] == "INVALID_ARGUMENT"
    big = {"type": "t", "payload": "x" * (1024 * 1024 + 1)}
    too_large = error_of(http.post("/v1/jobs", json=big), 413)
    assert too_large["type"] == "PayloadTooLarge"
    assert error_of(http.get("/v1/jobs/absent"), 404)["type"] == "MessageNotFound"


# -- the engine face ---------------------------------------------------------------------------


def test_namespaces_and_queues_over_rest(http: httpx.Client) -> None:
    ns = f"ns-{uuid.uuid4().hex[:8]}"
    created = http.post("/v1/namespaces", json={"name": ns, "config": {"max_queues": 3}})
    assert created.status_code == 201 and created.json()["config"]["max_queues"] == 3
    assert (
        error_of(http.post("/v1/namespaces", json={"name": ns}), 409)["type"] == "NamespaceExists"
    )
    bad = http.post("/v1/namespaces", json={"name": "x", "config": {"max_queues": -1}})
    assert error_of(bad, 400)["field"] == "config.max_queues"
    assert ns in [n["name"] for n in http.get("/v1/namespaces").json()["namespaces"]]

    config = {"max_deliveries": 2, "backoff": {"base_ms": 100}}
    queue = http.post(f"/v1/namespaces/{ns}/queues", json={"name": "work", "config": config})
    assert queue.status_code == 201 and queue.json()["config"]["backoff"]["base_ms"] == 100
    bad_factor = {"name": "w2", "config": {"backoff": {"factor": 0.5}}}
    refused = http.post(f"/v1/namespaces/{ns}/queues", json=bad_factor)
    assert error_of(refused, 400)["field"] == "config.backoff.factor"
    unknown = http.post(f"/v1/namespaces/{ns}/queues", json={"name": "w3", "config": {"speed": 1}})
    assert error_of(unknown, 400)["type"] == "ConfigError"
    updated = http.put(f"/v1/namespaces/{ns}/queues/work", json={"config": {"max_deliveries": 7}})
    assert updated.json()["config"]["max_deliveries"] == 7
    assert http.get(f"/v1/namespaces/{ns}/queues/work").json()["config"]["max_deliveries"] == 7
    assert [q["name"] for q in http.get(f"/v1/namespaces/{ns}/queues").json()["queues"]] == ["work"]
    http.post(f"/v1/namespaces/{ns}/queues/work/messages", json={"payload": "x"})
    refused = http.delete(f"/v1/namespaces/{ns}/queues/work")
    assert error_of(refused, 409)["type"] == "NotEmpty"
    assert http.get(f"/v1/namespaces/{ns}/queues/work").json()["paused_at"] is None
    paused = http.post(f"/v1/namespaces/{ns}/queues/work/pause").json()
    assert paused["paused_at"] >= paused["created_at"] and paused["name"] == "work"
    assert http.post(f"/v1/namespaces/{ns}/queues/work/dequeue", json={}).json() == {"messages": []}
    again = http.post(f"/v1/namespaces/{ns}/queues/work/pause").json()
    assert again["paused_at"] == paused["paused_at"]  # pausing twice changes nothing
    assert http.get(f"/v1/namespaces/{ns}/queues/work/stats").json()["paused"] is True
    assert http.post(f"/v1/namespaces/{ns}/queues/work/resume").json()["paused_at"] is None
    assert http.get(f"/v1/namespaces/{ns}/queues/work/stats").json()["paused"] is False
    missing = http.post(f"/v1/namespaces/{ns}/queues/nope/pause")
    assert error_of(missing, 404)["type"] == "QueueNotFound"
    assert error_of(http.post(f"/v1/namespaces/{ns}/queues/bad name/resume"), 400)["field"] == (
        "queue"
    )
    assert http.post(f"/v1/namespaces/{ns}/queues/work/purge").json() == {"count": 1}
    assert http.delete(f"/v1/namespaces/{ns}/queues/work").status_code == 204
    assert error_of(http.get(f"/v1/namespaces/{ns}/queues/work"), 404)["type"] == "QueueNotFound"
    assert http.delete(f"/v1/namespaces/{ns}").status_code == 204
    assert error_of(http.get(f"/v1/namespaces/{ns}"), 404)["type"] == "NamespaceNotFound"
    assert error_of(http.get("/v1/namespaces/bad name"), 400)["field"] == "namespace"


def test_messages_over_rest(http: httpx.Client) -> None:
    ns = f"ns-{uuid.uuid4().hex[:8]}"
    http.post("/v1/namespaces", json={"name": ns})
    http.post(f"/v1/namespaces/{ns}/queues", json={"name": "q"})
    base = f"/v1/namespaces/{ns}/queues/q"
    raw = base64.b64encode(b"\xff\x00bytes").decode()
    batch = http.post(
        f"{base}/messages",
        json={
            "messages": [{"payload": "low", "priority": 1}, {"payload_base64": raw, "priority": 9}]
        },
    )
    assert batch.status_code == 201
    high_id = batch.json()["results"][1]["message_id"]
    bad_batch = http.post(
        f"{base}/messages", json={"messages": [{"payload": "a"}, {"priority": 1}]}
    )
    assert error_of(bad_batch, 400)["field"].startswith("messages[1]")
    assert http.get(f"{base}/stats").json()["ready"] == 2

    (high,) = http.post(f"{base}/dequeue", json={"visibility_timeout_ms": 5_000}).json()["messages"]
    assert high["id"] == high_id and high["payload"] is None
    assert base64.b64decode(high["payload_base64"]) == b"\xff\x00bytes"
    extended = settle(http, high, "extend", add_ms=10_000).json()["lock_deadline"]
    assert extended >= high["lock_deadline"] + 10_000
    for _ in range(2):  # from the deadline held: sent twice, it extends once
        again = settle(http, high, "extend", add_ms=10_000, from_deadline=extended)
        assert again.json()["lock_deadline"] == extended + 10_000
    bad = settle(http, high, "extend", add_ms=10_000, from_deadline=-1)
    assert error_of(bad, 400)["field"] == "from_deadline"
    wrong = http.post(f"{base}/messages/{high_id}/ack", json={"lock_id": "not-the-lock"})
    assert error_of(wrong, 409)["type"] == "LockLost"
    released = settle(http, high, "release").json()["visible_at"]
    assert released > 0
    (again,) = http.post(f"{base}/dequeue", json={"max_count": 1}).json()["messages"]
    assert again["id"] == high_id and again["deliveries"] == 1  # a release gives the try back
    nacked = settle(http, again, "nack", error="bad", dead_letter=True).json()
    assert nacked["outcome"] == "dead_lettered"
    assert http.get(f"{base}/messages/{high_id}").json()["state"] == "dead"
    dead = http.get(f"{base}/messages", params={"state": ["dead"]}).json()["messages"]
    assert [m["id"] for m in dead] == [high_id]
    assert error_of(http.get(f"{base}/messages", params={"state": "lost"}), 400)["field"] == "state"
    assert error_of(http.post(f"{base}/messages", json={}), 400)["field"] == "body"
    assert (
        error_of(http.post(f"{base}/dequeue", json={"max_count": 0}), 400)["field"] == "max_count"
    )
    bad_nack = settle(http, again, "nack", reason="because")
    assert error_of(bad_nack, 400)["field"] == "reason"


# -- operations, docs, auth --------------------------------------------------------------------


def test_health_and_docs(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz").json()
    assert ready["ready"] is True and ready["applied_index"] >= ready["commit_index"] > 0
    schema = http.get("/openapi.json").json()
    for path in ("/v1/jobs", "/v1/jobs/{job_id}", "/v1/queues", "/v1/dlq/redrive", "/v1/workers"):
        assert path in schema["paths"]
    assert "X-API-Key" in str(schema["components"]["securitySchemes"])
    docs = http.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert http.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert error_of(http.get("/v1/nowhere"), 404)["code"] == "NOT_FOUND"
    assert error_of(http.delete("/v1/jobs"), 405)["code"] == "METHOD_NOT_ALLOWED"


def test_rest_auth_roles_and_scopes(tmp_path: Path) -> None:
    keys = "adminkey1:admin,pushkey01:producer,pullkey01:consumer,teamkey01:producer:team"
    node = NodeProcess(str(tmp_path), "--api-key", keys).start()
    try:
        with httpx.Client(base_url=f"http://{node.http}", timeout=10) as http:
            job = {"type": "t", "payload": 1}
            assert error_of(http.post("/v1/jobs", json=job), 401)["code"] == "UNAUTHENTICATED"
            wrong = http.post("/v1/jobs", json=job, headers={"X-API-Key": "wrongkey1"})
            assert error_of(wrong, 401)["type"] == "Unauthenticated"
            consumer = http.post("/v1/jobs", json=job, headers={"X-API-Key": "pullkey01"})
            assert error_of(consumer, 403)["code"] == "PERMISSION_DENIED"
            made = http.post("/v1/jobs", json=job, headers={"X-API-Key": "pushkey01"})
            assert made.status_code == 201  # the default namespace and queue made on demand
            bearer = {"Authorization": "Bearer pullkey01"}
            assert http.get(f"/v1/jobs/{made.json()['id']}", headers=bearer).status_code == 200
            # Reporting progress is a consumer's call (past the key, the lock decides).
            progress = (
                f"/v1/namespaces/default/queues/default/messages/{made.json()['id']}/progress"
            )
            report = {"lock_id": "not-a-lease", "progress": 50}
            pushed = http.post(progress, json=report, headers={"X-API-Key": "pushkey01"})
            assert error_of(pushed, 403)["type"] == "PermissionDenied"
            assert (
                error_of(http.post(progress, json=report, headers=bearer), 409)["type"]
                == "LockLost"
            )
            scoped = http.post("/v1/jobs", json=job, headers={"X-API-Key": "teamkey01"})
            assert error_of(scoped, 403)["message"].startswith("this key is limited")
            namespaces = http.post(
                "/v1/namespaces", json={"name": "x"}, headers={"X-API-Key": "pushkey01"}
            )
            assert error_of(namespaces, 403)["type"] == "PermissionDenied"
            pause = "/v1/namespaces/default/queues/default/pause"
            assert error_of(http.post(pause, headers=bearer), 403)["type"] == "PermissionDenied"
            admin = {"X-API-Key": "adminkey1"}
            assert http.post(pause, headers=admin).json()["paused_at"] > 0
            # Connected workers: any key of the namespace; none, or another's, is refused.
            assert error_of(http.get("/v1/workers"), 401)["code"] == "UNAUTHENTICATED"
            assert http.get("/v1/workers", headers=bearer).json() == {"workers": []}
            team = {"X-API-Key": "teamkey01"}
            assert (
                error_of(http.get("/v1/workers", headers=team), 403)["type"] == "PermissionDenied"
            )
            on_team = http.get("/v1/workers", params={"namespace": "team"}, headers=team)
            assert on_team.json() == {"workers": []}
            assert http.get("/healthz").status_code == 200  # no key needed
            assert http.get("/readyz").status_code == 200
            assert http.get("/openapi.json").status_code == 200
    finally:
        node.kill()
