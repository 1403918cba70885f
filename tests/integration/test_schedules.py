"""Schedules on a real node: the leader submits the job at each cron time,
once (a restart neither repeats a fire nor makes up every missed one);
pause, trigger and delete; every bad schedule refused naming the field."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from click.testing import CliRunner, Result

from kokaq.client import Client
from kokaq.core import FailedPrecondition, MessageSpec, ScheduleNotFound, ScheduleSpec
from kokaq.repl.cli import cli
from tests.integration.nodes import NodeProcess, wait_until
from tests.integration.scrape import scrape
from tests.integration.worker_processes import Workers

EVERY_SECOND = "* * * * * *"


@pytest.fixture(scope="module")
def http(node: NodeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{node.http}", timeout=10) as client:
        yield client


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return dict(response.json()["error"])


def jobs_of(http: httpx.Client, queue: str) -> list[dict[str, Any]]:
    return list(http.get("/v1/jobs", params={"queue": queue, "limit": 1000}).json()["jobs"])


def fire_times(jobs: list[dict[str, Any]]) -> list[int]:
    """Each fired job's fire time, from the idempotency key the schedule gave
    it (a triggered job's says ``now-…``)."""
    keys = [job["idempotency_key"].rsplit(":", 1)[1] for job in jobs]
    return sorted(int(key) for key in keys if key.isdigit())


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def test_a_schedule_submits_its_job_at_each_time_and_workers_run_them(
    http: httpx.Client, node: NodeProcess, tmp_path: Path
) -> None:
    queue, name = f"s-{uuid.uuid4().hex[:8]}", f"tick-{uuid.uuid4().hex[:6]}"
    body = {"cron": EVERY_SECOND, "type": "ok", "payload": {"n": 1}, "queue": queue}
    put = http.put(f"/v1/schedules/{name}", json=body | {"priority": 7, "max_retries": 1})
    assert put.status_code == 200, put.text
    made = put.json()
    shown_job = (made["queue"], made["type"], made["payload"], made["priority"])
    assert shown_job == (queue, "ok", {"n": 1}, 7)
    assert made["max_retries"] == 1 and made["fired"] == 0 and made["last_fire_at"] is None
    first = ms(made["next_fire_at"])
    assert first % 1000 == 0 and 0 < first - time.time() * 1000 <= 1_100

    workers = Workers(node, tmp_path)
    try:
        workers.start(queue, "--concurrency", "2")
        wait_until(lambda: len(jobs_of(http, queue)) >= 3, timeout=15)
        jobs = jobs_of(http, queue)
        times = fire_times(jobs)
        assert times[:3] == [first, first + 1000, first + 2000]  # one job a second, none twice
        assert len(set(times)) == len(times)
        for job in jobs:
            created = ms(job["created_at"])
            assert 0 <= created - int(job["idempotency_key"].rsplit(":", 1)[1]) < 1_000  # on time
            assert (job["type"], job["payload"], job["priority"]) == ("ok", {"n": 1}, 7)
        wait_until(lambda: {j["status"] for j in jobs_of(http, queue)[-3:]} == {"succeeded"}, 10)
    finally:
        workers.stop_all()
    shown = http.get(f"/v1/schedules/{name}").json()
    assert shown["fired"] >= 3 and shown["last_error"] is None
    samples = scrape(http)
    at = frozenset({"namespace": "default", "schedule": name}.items())
    assert samples[("kokaq_schedule_fired_total", at)] >= shown["fired"]
    assert samples[("kokaq_schedule_last_fire_failed", at)] == 0
    assert samples[("kokaq_schedule_next_fire_timestamp_seconds", at)] > time.time() - 1
    assert shown["last_job_id"] in {job["id"] for job in jobs_of(http, queue)}
    assert name in [s["name"] for s in http.get("/v1/schedules").json()["schedules"]]

    # Paused, it submits nothing; a trigger submits one now; resumed, it goes on.
    paused = http.put(f"/v1/schedules/{name}", json=body | {"paused": True}).json()
    assert paused["paused"] and paused["fired"] == shown["fired"]  # its history stays
    time.sleep(0.3)  # a fire proposed just before the pause lands
    count = len(jobs_of(http, queue))
    time.sleep(2.2)
    assert len(jobs_of(http, queue)) == count
    triggered = http.post(f"/v1/schedules/{name}/trigger")
    assert triggered.status_code == 201 and triggered.json()["status"] == "pending"
    assert len(jobs_of(http, queue)) == count + 1
    http.put(f"/v1/schedules/{name}", json=body)
    wait_until(lambda: len(jobs_of(http, queue)) >= count + 2, timeout=5)

    # Paused and resumed by name: it goes on from the next time to come.
    assert http.post(f"/v1/schedules/{name}/pause").json()["paused"] is True
    time.sleep(0.3)
    count = len(jobs_of(http, queue))
    time.sleep(2.2)
    assert len(jobs_of(http, queue)) == count  # the two times passed are not made up
    resumed_at = time.time() * 1000
    assert http.post(f"/v1/schedules/{name}/resume").json()["paused"] is False
    wait_until(lambda: len(jobs_of(http, queue)) >= count + 1, timeout=5)
    assert fire_times(jobs_of(http, queue))[-1] > resumed_at

    assert http.delete(f"/v1/schedules/{name}").status_code == 204
    time.sleep(0.3)
    count = len(jobs_of(http, queue))
    time.sleep(1.5)
    assert len(jobs_of(http, queue)) == count
    assert error_of(http.get(f"/v1/schedules/{name}"), 404)["type"] == "ScheduleNotFound"


def test_what_get_shows_puts_the_same_schedule_back(http: httpx.Client) -> None:
    name = f"full-{uuid.uuid4().hex[:6]}"
    body = {
        "cron": "15 3 * * 0",
        "timezone": "America/New_York",
        "type": "cleanup",
        "payload": {"older_than_days": 30},
        "queue": "maintenance",
        "priority": 3,
        "max_retries": 7,
        "ttl_seconds": 3600.0,
        "fairness_key": "ops",
        "retry_backoff": {"base_seconds": 5.0, "factor": 3.0, "max_seconds": 600.0, "jitter": 0.1},
        "paused": True,
        "skip_if_running": True,
    }
    first = http.put(f"/v1/schedules/{name}", json=body).json()
    assert {key: first[key] for key in body} == body
    read_only = {"name", "next_fire_at", "last_fire_at", "last_job_id", "last_error", "fired"}
    again = {k: v for k, v in first.items() if k not in read_only | {"created_at", "updated_at"}}
    put_back = http.put(f"/v1/schedules/{name}", json=again)
    assert put_back.status_code == 200, put_back.text
    second = put_back.json()
    assert {key: second[key] for key in body} == body
    assert http.delete(f"/v1/schedules/{name}").status_code == 204


def test_bad_schedules_are_refused_naming_the_field(http: httpx.Client) -> None:
    good = {"cron": "0 6 * * *", "type": "report", "payload": {}}
    for change, field in (
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * * *"}, "cron"),
        ({"cron": ""}, "cron"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"timezone": "../etc/passwd"}, "timezone"),
        ({"priority": -1}, "priority"),
        ({"max_retries": -1}, "max_retries"),
        ({"queue": "bad name"}, "queue"),
        ({"speed": 1}, "speed"),
        ({"payload": None, "type": None}, "type"),
    ):
        refused = error_of(http.put("/v1/schedules/daily-report", json=good | change), 400)
        assert refused["field"] == field, (change, refused)
    assert error_of(http.put("/v1/schedules/bad name", json=good), 400)["field"] == "name"
    missing = http.put("/v1/schedules/daily-report", json=good | {"namespace": "nowhere-ns"})
    assert error_of(missing, 404)["type"] == "NamespaceNotFound"
    assert error_of(http.post("/v1/schedules/nothing-here/trigger"), 404)["type"] == (
        "ScheduleNotFound"
    )
    assert error_of(http.delete("/v1/schedules/nothing-here"), 404)["type"] == "ScheduleNotFound"
    for action in ("pause", "resume"):
        gone = http.post(f"/v1/schedules/nothing-here/{action}")
        assert error_of(gone, 404)["type"] == "ScheduleNotFound"
    assert "daily-report" not in [s["name"] for s in http.get("/v1/schedules").json()["schedules"]]


def test_the_sdk_puts_a_schedule_in_its_zone(node: NodeProcess) -> None:
    with Client(node.grpc) as client:
        namespace = f"sdk-{uuid.uuid4().hex[:8]}"
        client.create_namespace(namespace)
        client.create_queue(namespace, "reports")
        spec = ScheduleSpec("reports", "30 6 * * 1-5", MessageSpec(payload=b"go"), "Asia/Tokyo")
        info = client.put_schedule(namespace, "morning", spec)
        fire = datetime.fromtimestamp(info.next_fire_at / 1000, tz=ZoneInfo("Asia/Tokyo"))
        assert (fire.hour, fire.minute, fire.second, fire.weekday() < 5) == (6, 30, 0, True)
        assert client.get_schedule(namespace, "morning") == info
        assert client.list_schedules(namespace) == [info]
        result = client.trigger_schedule(namespace, "morning")
        assert client.queue(namespace, "reports").get(result.message_id).payload == b"go"
        assert client.get_schedule(namespace, "morning").fired == 1
        client.delete_schedule(namespace, "morning")
        with pytest.raises(ScheduleNotFound):
            client.get_schedule(namespace, "morning")


def test_a_restart_neither_repeats_a_fire_nor_makes_up_each_missed_one(tmp_path: Path) -> None:
    node = NodeProcess(str(tmp_path / "data")).start()
    try:
        with httpx.Client(base_url=f"http://{node.http}", timeout=10) as http:
            body = {"cron": EVERY_SECOND, "type": "ok", "payload": 1, "queue": "ticks"}
            assert http.put("/v1/schedules/tick", json=body).status_code == 200
            wait_until(lambda: len(jobs_of(http, "ticks")) >= 2, timeout=10)
        assert node.stop() == 0
        down_at = time.time()
        time.sleep(3.0)  # three fire times pass with no node
        node.start()
        up_at = time.time()
        with httpx.Client(base_url=f"http://{node.http}", timeout=10) as http:
            wait_until(lambda: http.get("/v1/schedules/tick").json()["fired"] >= 4, timeout=10)
            times = fire_times(jobs_of(http, "ticks"))
        assert len(set(times)) == len(times)  # no fire twice
        missed = [t for t in times if down_at * 1000 < t < up_at * 1000 - 1000]
        assert len(missed) <= 1, (times, down_at, up_at)  # the missed ones fire once, late
    finally:
        node.kill()


def test_a_node_held_to_an_older_log_format_refuses_schedules(tmp_path: Path) -> None:
    node = NodeProcess(str(tmp_path), "--log-format", "3").start()
    try:
        with Client(node.grpc) as client:
            client.create_namespace("n")
            client.create_queue("n", "q")
            spec = ScheduleSpec("q", "0 6 * * *", MessageSpec(payload=b"x"))
            with pytest.raises(FailedPrecondition, match="PutSchedule needs format 4"):
                client.put_schedule("n", "daily", spec)
            assert client.list_schedules("n") == []
            client.queue("n", "q").pause()  # format 3's own writes go
    finally:
        node.kill()


def test_the_kokaq_command_manages_schedules(node: NodeProcess) -> None:
    namespace = f"cli-{uuid.uuid4().hex[:8]}"
    env = {"KOKAQ_SERVER": node.grpc, "KOKAQ_NAMESPACE": namespace}
    runner = CliRunner()

    def kokaq(*args: str, code: int = 0) -> Result:
        result = runner.invoke(cli, list(args), env=env)
        assert result.exit_code == code, (result.output, result.exception)
        return result

    kokaq("namespace", "create", namespace)
    put = kokaq(
        "schedule", "put", "nightly", "report_build", '{"kind": "daily"}',
        "--cron", "0 2 * * *", "--timezone", "Europe/Paris", "-q", "reports", "--json",
    )  # fmt: skip
    shown = json.loads(put.stdout)
    assert (shown["type"], shown["payload"]) == ("report_build", {"kind": "daily"})
    assert shown["queue"] == "reports" and shown["timezone"] == "Europe/Paris"
    fire = datetime.fromisoformat(shown["next_fire_at"].replace("Z", "+00:00"))
    assert fire.astimezone(ZoneInfo("Europe/Paris")).hour == 2
    listed = kokaq("schedule", "list").stdout.splitlines()
    assert listed[1].split()[:5] == ["nightly", "report_build", "reports", "0", "2"]
    assert "Europe/Paris" in listed[1]
    triggered = json.loads(kokaq("schedule", "trigger", "nightly", "--json").stdout)
    assert json.loads(kokaq("jobs", "get", triggered["id"], "--json").stdout)["type"] == (
        "report_build"
    )
    assert "fired" in kokaq("schedule", "get", "nightly").stdout
    paused = kokaq("schedule", "put", "nightly", "report_build", "--cron", "0 2 * * *", "--paused")
    assert paused.stdout.strip() == "schedule nightly: paused"
    assert kokaq("schedule", "resume", "nightly").stdout.strip() == "resumed schedule nightly"
    assert json.loads(kokaq("schedule", "get", "nightly", "--json").stdout)["paused"] is False
    assert kokaq("schedule", "pause", "nightly").stdout.strip() == "paused schedule nightly"
    assert json.loads(kokaq("schedule", "get", "nightly", "--json").stdout)["paused"] is True
    kokaq("schedule", "pause", "nope", code=3)
    bad = kokaq("schedule", "put", "x", "t", "--cron", "0 25 * * *", code=1)
    assert bad.stderr.startswith("Error: cron: ")
    bad = kokaq("schedule", "put", "x", "t", "not json", "--cron", "0 2 * * *", code=1)
    assert bad.stderr.startswith("Error: payload: ")
    kokaq("schedule", "put", "x", "t", code=2)  # --cron is required
    assert kokaq("schedule", "delete", "nightly").stdout.strip() == "deleted schedule nightly"
    kokaq("schedule", "get", "nightly", code=3)
