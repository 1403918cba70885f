"""The ``kokaq`` command against a real node: good input, bad input, exit codes,
human and --json output."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from kokaq.repl import session as session_module
from kokaq.repl.cli import cli
from kokaq.repl.worker import load_handlers
from kokaq.server.log_format import LOG_FORMAT
from tests.integration.nodes import NodeProcess


class Kokaq:
    """Runs ``kokaq …`` in process against one node and namespace."""

    def __init__(self, node: NodeProcess, namespace: str) -> None:
        self.env = {"KOKAQ_SERVER": node.grpc, "KOKAQ_NAMESPACE": namespace}
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int = 0, stdin: str | None = None) -> Result:
        result = self.runner.invoke(cli, list(args), env=self.env, input=stdin)
        assert result.exit_code == code, (result.output, result.exception)
        if code in (1, 3, 4, 5):
            assert result.stderr.startswith("Error: "), result.stderr
            assert "Traceback" not in result.output
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)


@pytest.fixture
def kokaq(node: NodeProcess) -> Kokaq:
    namespace = f"cli-{uuid.uuid4().hex[:8]}"
    run = Kokaq(node, namespace)
    run("namespace", "create", namespace, "--description", "from the cli")
    return run


def ns(kokaq: Kokaq) -> str:
    return kokaq.env["KOKAQ_NAMESPACE"]


def test_namespaces(kokaq: Kokaq) -> None:
    name = ns(kokaq)
    assert kokaq.json("namespace", "get", name)["config"] == {
        "description": "from the cli",
        "max_queues": None,
    }
    listed = kokaq("namespace", "list").stdout
    header, *rows = listed.splitlines()
    assert header.split() == ["NAME", "QUEUES", "MAX_QUEUES", "CREATED", "DESCRIPTION"]
    assert any(row.split()[0] == name for row in rows)
    assert kokaq.json("namespace", "update", name, "--max-queues", "3")["config"]["max_queues"] == 3
    kokaq("namespace", "create", name, code=1)  # exists
    kokaq("namespace", "get", "no-such-ns", code=3)
    bad = kokaq("namespace", "create", "bad name!", code=1)
    assert bad.stderr.startswith("Error: namespace: ")
    kokaq("queue", "create", "q")
    kokaq("namespace", "delete", name, code=1)  # not empty
    assert kokaq.json("namespace", "delete", name, "--force") == {"deleted": name}
    kokaq("namespace", "get", name, code=3)


def test_queues(kokaq: Kokaq, tmp_path: Path) -> None:
    created = kokaq.json("queue", "create", "orders", "--visibility", "2m", "--max-deliveries", "4")
    assert created["config"]["visibility_timeout_ms"] == 120_000
    assert created["config"]["max_deliveries"] == 4
    settings = tmp_path / "q.json"
    settings.write_text(json.dumps({"dedup_window_ms": 0, "max_deliveries": 9}))
    updated = kokaq.json("queue", "update", "orders", "--config", f"@{settings}", "--ttl", "1h")
    assert updated["config"]["max_deliveries"] == 9  # from the file
    assert updated["config"]["default_ttl_ms"] == 3_600_000
    assert updated["config"]["visibility_timeout_ms"] == 120_000  # kept
    _, row = kokaq("queue", "list").stdout.splitlines()
    assert row.split() == ["orders", "0", "0", "0", "0", "2m", "9"]
    assert "visibility_timeout_ms: 120000" in kokaq("queue", "get", "orders").stdout
    kokaq("enqueue", "orders", "x")
    assert kokaq.json("queue", "stats", "orders")["ready"] == 1
    lines = kokaq("queue", "stats", "orders").stdout.splitlines()
    assert ["total", "enqueued", "1"] in [line.split() for line in lines]
    assert "paused" not in kokaq("queue", "stats", "orders").stdout
    assert kokaq("queue", "pause", "orders").stdout.startswith("paused queue cli-")
    assert kokaq.json("dequeue", "orders") == []  # dispatches nothing
    assert kokaq.json("queue", "stats", "orders")["paused"] is True
    assert "paused: dispatches nothing" in kokaq("queue", "stats", "orders").stdout
    assert kokaq("queue", "list").stdout.splitlines()[1].split()[:2] == ["orders", "(paused)"]
    assert kokaq.json("queue", "resume", "orders")["paused_at"] is None
    kokaq("queue", "pause", "missing", code=3)
    assert kokaq.json("queue", "purge", "orders") == {"purged": 1}
    # Bad settings name the field; usage errors exit 2; nothing changes.
    bad = kokaq("queue", "update", "orders", "--visibility", "0s", code=1)
    assert bad.stderr.startswith("Error: visibility_timeout_ms: ")
    bad = kokaq("queue", "update", "orders", "--config", '{"nope": 1}', code=1)
    assert bad.stderr.startswith("Error: nope: ")
    kokaq("queue", "update", "orders", "--config", "[1]", code=2)
    kokaq("queue", "update", "orders", "--config", "{", code=2)
    kokaq("queue", "create", "q2", "--visibility", "soon", code=2)
    assert kokaq.json("queue", "get", "orders")["config"]["max_deliveries"] == 9
    kokaq("queue", "get", "missing", code=3)
    kokaq("queue", "delete", "orders")
    kokaq("queue", "delete", "orders", code=3)


def test_message_lifecycle(kokaq: Kokaq, tmp_path: Path) -> None:
    kokaq("queue", "create", "jobs", "--max-priority", "100", "--max-deliveries", "2")
    first = kokaq.json("enqueue", "jobs", '{"id": 1}', "-p", "5", "--header", "type=email")
    assert first["state"] == "ready" and first["duplicate"] is False
    payload_file = tmp_path / "p.bin"
    payload_file.write_bytes(b"\xff\x00binary")
    kokaq("enqueue", "jobs", "--file", str(payload_file), "-p", "3")
    kokaq("enqueue", "jobs", "-p", "9", "--dedup-key", "k1", stdin="from stdin")
    again = kokaq.json("enqueue", "jobs", "other", "--dedup-key", "k1")
    assert again["duplicate"] is True
    delayed = kokaq.json("enqueue", "jobs", "later", "--delay", "1h", "--ttl", "2h")
    assert delayed["state"] == "delayed"

    peeked = kokaq.json("peek", "jobs", "--count", "5")
    assert [m["priority"] for m in peeked] == [9, 5, 3]
    assert peeked[0]["payload"] == "from stdin"
    assert peeked[2]["payload"] == {"base64": "/wBiaW5hcnk="}
    table = kokaq("peek", "jobs", "-c", "5").stdout.splitlines()
    assert table[0].split() == ["ID", "STATE", "PRIORITY", "DELIVERIES", "CREATED", "PAYLOAD"]
    assert "<8 bytes>" in table[3]

    (job,) = kokaq.json("dequeue", "jobs", "--visibility", "30s")
    assert job["payload"] == "from stdin" and job["state"] == "leased"
    lock = [job["id"], job["lock_id"]]
    extended = kokaq.json("extend", "jobs", *lock, "--by", "1m")
    assert extended["lock_deadline"] == job["lock_deadline"] + 60_000
    assert kokaq.json("release", "jobs", *lock)["visible_at"] > 0
    kokaq("ack", "jobs", *lock, code=1)  # the lease is gone

    (job,) = kokaq.json("dequeue", "jobs")
    lock = [job["id"], job["lock_id"]]
    nacked = kokaq.json("nack", "jobs", *lock, "--error", "smtp down", "--delay", "0s")
    assert nacked["outcome"] == "requeued"
    (job,) = kokaq.json("dequeue", "jobs")
    assert job["deliveries"] == 3 - 1 and job["last_error"] == "smtp down"
    acked = kokaq("ack", "jobs", job["id"], job["lock_id"], "--result", '{"sent": true}')
    assert "ack" not in acked.stderr
    got = kokaq("get", "jobs", job["id"]).stdout
    assert "state: succeeded" in got and "last_error: smtp down" in got
    assert 'result: {\n  "sent": true\n}' in got

    leased = kokaq("dequeue", "jobs", "--count", "5").stdout.splitlines()
    assert leased[0].split()[4:6] == ["LOCK_ID", "LOCK_DEADLINE"] and len(leased) == 3
    assert kokaq.json("dequeue", "jobs", "--ack") == []  # nothing left ready

    # Bad input: named, exit codes, nothing changes.
    bad = kokaq("enqueue", "jobs", "x", "-p", "500", code=1)
    assert bad.stderr.startswith("Error: priority: ")
    kokaq("enqueue", "jobs", "x", "-p", "-1", code=1)
    kokaq("enqueue", "jobs", "x", "--header", "novalue", code=2)
    kokaq("enqueue", "jobs", "x", "--file", str(payload_file), code=2)
    kokaq("enqueue", "nowhere", "x", code=3)
    kokaq("dequeue", "jobs", "--count", "0", code=2)
    kokaq("peek", "jobs", "--count", "1001", code=2)
    kokaq("ack", "jobs", "no-such-id", "lock", code=3)
    kokaq("extend", "jobs", job["id"], "lock", code=2)  # --by is required
    kokaq("get", "jobs", "no-such-id", code=3)
    assert kokaq.json("queue", "stats", "jobs")["leased"] == 2


def test_reprioritize_and_dead_letters(kokaq: Kokaq) -> None:
    kokaq("queue", "create", "mail", "--max-deliveries", "1")
    ids = [kokaq.json("enqueue", "mail", f"m{i}", "-p", str(i))["message_id"] for i in range(3)]
    assert kokaq.json("reprioritize", "mail", "50", "--id", ids[0]) == {"count": 1}
    assert kokaq.json("peek", "mail")[0]["id"] == ids[0]
    moved = kokaq("reprioritize", "mail", "7", "--min-priority", "1", "--max-priority", "2")
    assert moved.stdout.strip() == "reprioritized 2 messages"
    kokaq("reprioritize", "mail", "1", "--state", "leased", code=2)

    for _ in range(3):
        (job,) = kokaq.json("dequeue", "mail")
        kokaq("nack", "mail", job["id"], job["lock_id"], "--error", "bounced")
    page = kokaq.json("dlq", "list", "mail", "--limit", "2")
    assert len(page["messages"]) == 2 and page["next_cursor"] is not None
    rest = kokaq.json("dlq", "list", "mail", "--after", str(page["next_cursor"]))
    assert len(rest["messages"]) == 1 and rest["next_cursor"] is None
    listed = kokaq("dlq", "list", "mail").stdout.splitlines()
    assert listed[0].split() == ["ID", "DELIVERIES", "REASON", "LAST_ERROR"] and len(listed) == 4
    first = page["messages"][0]["id"]
    assert kokaq.json("dlq", "redrive", "mail", first) == {"count": 1}
    assert kokaq.json("dlq", "purge", "mail") == {"count": 2}
    assert kokaq.json("queue", "stats", "mail")["ready"] == 1
    kokaq("dlq", "list", "nowhere", code=3)


def test_auth_and_unreachable_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keyed = NodeProcess(
        str(tmp_path / "keyed"), env={"KOKAQ_API_KEYS": "admin-key-1:admin,reader-key:consumer"}
    ).start()
    try:
        run = Kokaq(keyed, "default")
        run("namespace", "list", code=4)  # no key
        run("namespace", "list", "--api-key", "wrong-key-123", code=4)
        run("namespace", "create", "default", "--api-key", "admin-key-1")
        run("namespace", "create", "other", "--api-key", "reader-key", code=4)
        run.env["KOKAQ_API_KEY"] = "admin-key-1"
        assert run.json("namespace", "list")[0]["name"] == "default"
    finally:
        keyed.kill()
    monkeypatch.setattr(session_module, "RETRY_SECONDS", 0.3)
    down = run("namespace", "list", code=5)
    assert "Error: " in down.stderr


def test_cluster_status(kokaq: Kokaq, node: NodeProcess) -> None:
    status = kokaq.json("cluster", "status")
    assert status["role"] == "leader" and status["members"] == []
    assert status["leader"] == node.raft and status["leader_grpc"] == node.grpc
    assert status["log_format"] == LOG_FORMAT  # a single node agrees before it is ready
    text = kokaq("cluster", "status").stdout
    assert f"leader:   {node.raft} (gRPC {node.grpc})" in text
    assert f"log format: {LOG_FORMAT} (this node applies " in text


def test_server_refuses_bad_raft_timing(tmp_path: Path) -> None:
    runner = CliRunner()
    for args, field in (
        (["--election-timeout", "1s", "500ms"], "election_timeout"),
        (["--election-timeout", "10ms", "20ms"], "election_timeout"),
        (["--heartbeat", "300ms"], "heartbeat"),
    ):
        result = runner.invoke(cli, ["server", "--data-dir", str(tmp_path / "d"), *args])
        assert result.exit_code == 1
        assert result.stderr.startswith(f"Error: {field}: ")
    assert not (tmp_path / "d").exists()  # refused before touching anything
    result = runner.invoke(cli, ["server", "--heartbeat", "soon"])
    assert result.exit_code == 2


def test_version_and_help() -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["version"]).stdout.startswith("kokaq ")
    for command in (["enqueue"], ["queue", "create"], ["dlq", "list"], ["nack"]):
        text = runner.invoke(cli, [*command, "--help"]).stdout
        assert "--server" in text and "--json" in text and "Example" in text
    assert runner.invoke(cli, ["no-such-command"]).exit_code == 2


def test_jobs(kokaq: Kokaq) -> None:
    made = kokaq.json("jobs", "submit", "email_send", '{"to": "a@example.com"}', "-q", "mail",
                      "--priority", "7", "--max-retries", "2")  # fmt: skip
    assert made["status"] == "pending" and made["duplicate"] is False
    job_id = made["id"]
    job = kokaq.json("jobs", "get", job_id)
    assert (job["type"], job["queue"], job["priority"], job["max_retries"]) == (
        "email_send",
        "mail",
        7,
        2,
    )
    assert job["payload"] == {"to": "a@example.com"}
    shown = kokaq("jobs", "get", job_id).stdout
    assert "status" in shown and '"to": "a@example.com"' in shown
    assert shown.endswith("result:\n-\n")  # none yet
    kokaq("jobs", "submit", "report", "-q", "mail", "--delay", "1h")
    again = kokaq.json("jobs", "submit", "report", "-q", "mail", "--idempotency-key", "k1")
    assert kokaq.json("jobs", "submit", "other", "-q", "mail", "--idempotency-key", "k1") == {
        **again,
        "duplicate": True,
    }
    listed = kokaq.json("jobs", "list", "--limit", "2")
    assert [j["type"] for j in listed] == ["report", "report"]
    table = kokaq("jobs", "list", "-q", "mail", "--status", "pending").stdout.splitlines()
    assert table[0].split()[:4] == ["ID", "TYPE", "QUEUE", "STATUS"] and len(table) == 4
    counts = kokaq.json("jobs", "queues")
    assert counts == [{"queue": "mail", "pending": 3, "leased": 0, "succeeded": 0, "dead": 0}]
    totals = kokaq.json("jobs", "stats")
    assert totals[0]["submitted"] == 3 and totals[0]["queue"] == "mail"
    assert kokaq("jobs", "stats").stdout.split()[:2] == ["QUEUE", "SUBMITTED"]
    assert kokaq.json("jobs", "cancel", job_id)["status"] == "cancelled"
    kokaq("jobs", "get", job_id, code=3)
    bad = kokaq("jobs", "submit", "t", "{not json", code=1)
    assert bad.stderr.startswith("Error: payload: must be JSON")
    kokaq("jobs", "list", "--status", "lost", code=2)
    kokaq("jobs", "submit", "t", "--priority", "-1", code=1)


def test_bench(kokaq: Kokaq) -> None:
    result = kokaq.json("bench", "--messages", "300", "--size", "10", "--batch", "50")
    assert result["messages"] == 300
    for phase in ("produce", "consume"):
        figures = result[phase]
        assert figures["per_s"] > 0
        assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"]
    stats = kokaq.json("queue", "stats", "bench")
    assert stats["totals"]["enqueued"] == 300 and stats["totals"]["acked"] == 300
    human = kokaq("bench", "--messages", "20", "-q", "bench2").stdout
    assert "PHASE" in human and "produce" in human and "consume" in human
    kokaq("bench", "--messages", "0", code=2)


def test_cluster_changes_on_a_single_node(kokaq: Kokaq) -> None:
    """A single node has no one to add, remove or hand over to: clear refusals."""
    bad = kokaq("cluster", "add", "no-port", code=1)
    assert bad.stderr.startswith("Error: address: ")
    alone = kokaq("cluster", "transfer", code=1)  # no follower to take over
    assert "no member but this one" in alone.stderr
    stranger = kokaq("cluster", "remove", "127.0.0.1:1", code=1)
    assert "127.0.0.1:1 is not a member" in stranger.stderr
    me = kokaq.json("cluster", "status")["node"]
    assert "transfer leadership first" in kokaq("cluster", "remove", me, code=1).stderr
    assert "a member already" in kokaq("cluster", "add", me, code=1).stderr
    assert kokaq.json("cluster", "status")["role"] == "leader"


def test_worker_command_bad_input(
    kokaq: Kokaq, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = kokaq("worker", "no_such_module:worker", code=1)
    assert missing.stderr.startswith("Error: target: cannot load no_such_module:worker")
    assert kokaq("worker", "no-colon", code=1).stderr.startswith("Error: target: must be module:")
    (tmp_path / "not_handlers.py").write_text("worker = 42\n")
    monkeypatch.chdir(tmp_path)
    assert "neither a Worker" in kokaq("worker", "not_handlers:worker", code=1).stderr
    (tmp_path / "handlers.py").write_text("handlers = {'t': print}\n")
    weight = kokaq("worker", "handlers:handlers", "--queues", "a:x", code=1)
    assert weight.stderr.startswith("Error: queues: weight of 'a' must be")
    kokaq.env["KOKAQ_WORKER_QUEUES"] = "a:0"
    assert "queues" in kokaq("worker", "handlers:handlers", code=1).stderr  # from the environment
    kokaq("worker", "handlers:handlers", "--concurrency", "0", code=2)


def test_a_worker_module_s_settings_carry_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "timed.py").write_text(
        "from kokaq.client import Worker\n"
        "worker = Worker(job_timeout=7, queues={'emails': 3, 'reports': 1}, concurrency=5)\n"
        "worker.handler('a', timeout=2)(print)\n"
        "worker.handler('b')(print)\n"
    )
    monkeypatch.chdir(tmp_path)
    loaded = load_handlers("timed:worker")
    assert (sorted(loaded.handlers), dict(loaded.timeouts), loaded.job_timeout) == (
        ["a", "b"],
        {"a": 2},
        7,
    )
    assert (loaded.queues, loaded.concurrency) == ({"emails": 3, "reports": 1}, 5)
    (tmp_path / "plain.py").write_text("handlers = {'t': print}\n")
    assert load_handlers("plain:handlers")[1:] == ({}, None, None, None)
