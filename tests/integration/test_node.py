"""A real node process: auth, shutdown, restarts, crashes, and PySyncObj's
defects shown absent."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from pathlib import Path

import pytest

from kokaq.client import Client
from kokaq.core import (
    FailedPrecondition,
    InvalidArgument,
    MessageState,
    PermissionDenied,
    QueueConfig,
    Unauthenticated,
)
from kokaq.server.log_format import LOG_FORMAT
from tests.integration.nodes import NodeProcess, Producers, send_pickle, wait_until


def test_api_keys_roles_and_scopes(tmp_path: Path) -> None:
    keys = "adminkey1:admin,pushkey01:producer:shop,pullkey01:consumer"
    node = NodeProcess(str(tmp_path), "--api-key", keys).start()
    try:
        assert "no API key is configured" not in node.text
        admin = Client(node.grpc, api_key="adminkey1")
        admin.create_namespace("shop")
        admin.create_namespace("other")
        admin.create_queue("shop", "q")
        admin.create_queue("other", "q")
        with pytest.raises(Unauthenticated):
            Client(node.grpc).list_namespaces()
        with pytest.raises(Unauthenticated):
            Client(node.grpc, api_key="wrongkey1").list_namespaces()
        producer = Client(node.grpc, api_key="pushkey01")
        producer.queue("shop", "q").enqueue(b"x")
        with pytest.raises(PermissionDenied):
            producer.queue("other", "q").enqueue(b"x")  # outside its namespace
        with pytest.raises(PermissionDenied):
            producer.queue("shop", "q").dequeue()  # a consumer's call
        with pytest.raises(PermissionDenied):
            producer.create_queue("shop", "new")  # an admin's call
        consumer = Client(node.grpc, api_key="pullkey01")
        (job,) = consumer.queue("shop", "q").dequeue()
        job.ack()
        with pytest.raises(PermissionDenied):
            consumer.queue("shop", "q").enqueue(b"x")
    finally:
        node.kill()


def test_open_node_warns_loudly(node: NodeProcess) -> None:
    assert "WARNING: no API key is configured" in node.text


def test_sigterm_exits_zero_and_restart_keeps_everything(tmp_path: Path) -> None:
    node = NodeProcess(str(tmp_path)).start()
    client = Client(node.grpc)
    client.create_namespace("n")
    # Long enough to outlast a restart on a slow machine, short enough to wait out.
    client.create_queue("n", "q", QueueConfig(visibility_timeout_ms=5_000))
    q = client.queue("n", "q")
    ids = [r.message_id for r in q.enqueue_many([b"a", b"b", b"c"])]
    (leased,) = q.dequeue()
    started = time.monotonic()
    assert node.stop() == 0
    assert time.monotonic() - started < 10
    assert "kokaq node stopped" in node.text
    client.close()

    node.start()
    try:
        client = Client(node.grpc)
        q = client.queue("n", "q")
        assert q.get(leased.id).state is MessageState.LEASED
        # The lease runs out after the restart; the message comes back.
        wait_until(lambda: q.get(leased.id).state is MessageState.READY, timeout=15)
        got = sorted(m.id for m in q.dequeue(10))
        assert got == sorted(ids)
    finally:
        node.kill()


def test_a_dump_writer_outliving_its_node_changes_nothing(tmp_path: Path) -> None:
    """PySyncObj defect 2: its forked dump writer could outlive a killed node
    and replace the dump behind the restarted one. kokaq's writer (a fork too,
    so that compaction does not stop the node) never installs its file: the
    node does, once the writer succeeded."""
    data = tmp_path / "d"
    node = NodeProcess(str(data), "--compaction-entries", "10").start()
    writer = None
    try:
        client = Client(node.grpc)
        client.create_namespace("n")
        client.create_queue("n", "q")
        q = client.queue("n", "q")
        for _ in range(20):  # a state that takes the writer a while
            q.enqueue_many([b"x" * 100] * 1000)
        acknowledged = 20_000
        deadline = time.monotonic() + 30
        while writer is None:  # catch a writer at work, and freeze it
            assert time.monotonic() < deadline, "no dump writer seen"
            q.enqueue(b"y")
            acknowledged += 1
            if children := node.children():
                writer = children[0]
                os.kill(writer, signal.SIGSTOP)
        dump_before = (data / "raft.dump").read_bytes()
        node.kill()
        os.kill(writer, signal.SIGCONT)
        wait_until(lambda: not Path(f"/proc/{writer}").exists() or _zombie(writer))
        assert (data / "raft.dump").read_bytes() == dump_before  # the orphan installed nothing
        assert list(data.glob("raft.dump.*.part")), "the orphan's own file is where it wrote it"

        node.start()
        assert list(data.glob("raft.dump.*.part")) == []  # removed at start
        client = Client(node.grpc)
        assert client.queue("n", "q").stats().ready == acknowledged
    finally:
        if writer is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(writer, signal.SIGKILL)
        node.kill()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_the_raft_port_refuses_pickles(tmp_path: Path) -> None:
    """PySyncObj defect 5: pickles from anyone who reaches the Raft port."""
    node = NodeProcess(str(tmp_path / "d")).start()
    try:
        client = Client(node.grpc)
        client.create_namespace("n")
        client.create_queue("n", "q")
        client.queue("n", "q").enqueue(b"x")
        marker = tmp_path / "pwned"
        send_pickle(node.raft, marker)
        assert not marker.exists()
        assert client.queue("n", "q").stats().ready == 1  # and the node is fine
    finally:
        node.kill()


def test_sigkill_under_load_loses_no_acknowledged_message(tmp_path: Path) -> None:
    """Acknowledged enqueues survive SIGKILL at random moments, exactly once,
    with compaction forced often so that kills land during it."""
    node = NodeProcess(str(tmp_path), "--compaction-entries", "50").start()
    client = Client(node.grpc)
    client.create_namespace("n")
    client.create_queue("n", "q", QueueConfig(dedup_window_ms=0))
    acknowledged: list[str] = []
    rng = random.Random(7)
    for _round in range(5):
        producers = Producers([node.grpc], acknowledged, threads=3, batch=50, retry_timeout=0.5)
        time.sleep(rng.uniform(0.5, 1.5))
        node.kill()
        producers.stop()
        node.start()
    client = Client(node.grpc)
    try:
        q = client.queue("n", "q")
        assert len(acknowledged) >= 2_000
        assert len(set(acknowledged)) == len(acknowledged)
        stats = q.stats()
        missing = [i for i in acknowledged if q.get(i).state is not MessageState.READY]
        assert missing == []
        # Exactly once: nothing beyond the acknowledged ones and those whose
        # acknowledgement the kill cut off (at most one batch per producer per round).
        assert len(acknowledged) <= stats.ready <= len(acknowledged) + 5 * 3 * 50
    finally:
        node.kill()


def test_first_read_after_restart_sees_every_write(tmp_path: Path) -> None:
    """A restarted node applies its journal only once an entry of its new term
    commits; reads wait for that instead of answering from a stale engine."""
    node = NodeProcess(str(tmp_path)).start()
    client = Client(node.grpc)
    client.create_namespace("n")
    client.create_queue("n", "q")
    q = client.queue("n", "q")
    for _ in range(60):  # a long journal tail: its replay takes a while
        q.enqueue_many([b"m"] * 1000)
    client.close()
    node.kill()
    node.start()
    client = Client(node.grpc)
    try:
        assert client.queue("n", "q").stats().ready == 60_000
    finally:
        client.close()
        node.kill()


def test_a_node_held_to_log_format_1_keeps_no_results_until_it_is_let_go(tmp_path: Path) -> None:
    """--log-format 1 (a member of a rolling upgrade that keeps the way back
    open): a progress report only extends the lease and an ack keeps no
    result, as the builds before formats would apply them; restarted without
    the pin, the node agrees on the newest format and keeps both."""
    data = str(tmp_path / "data")
    node = NodeProcess(data, "--log-format", "1").start()
    try:
        client = Client(node.grpc)
        wait_until(lambda: client.cluster_status().node_log_format == 1)
        assert client.cluster_status().log_format == 1
        client.create_namespace("n")
        client.create_queue("n", "q")
        queue = client.queue("n", "q")
        queue.enqueue(b"first")
        (held,) = queue.dequeue()
        leased_until = held.lock_deadline
        assert leased_until is not None
        time.sleep(0.05)
        assert held.report_progress({"step": 1}) > leased_until  # still a heartbeat
        with pytest.raises(InvalidArgument) as refused:
            held.report_progress("x" * 5000)
        assert refused.value.field == "progress"
        held.ack(result=b"done")
        first = queue.get(held.id)
        assert (first.state, first.result, first.progress) == (MessageState.SUCCEEDED, None, None)
        assert "job results and progress reports are not kept" in node.text
        with pytest.raises(FailedPrecondition, match="PauseQueue needs format 3"):
            queue.pause()
        assert not queue.stats().paused
        assert node.stop() == 0

        node = NodeProcess(data).start()
        client = Client(node.grpc)
        assert client.cluster_status().log_format == LOG_FORMAT  # agreed before it was ready
        queue = client.queue("n", "q")
        queue.enqueue(b"second")
        (held,) = queue.dequeue()
        held.report_progress({"step": 1})
        assert queue.get(held.id).progress == '{"step":1}'
        held.ack(result=b"done")
        assert queue.get(held.id).result == b"done"
        assert queue.get(first.id).result is None  # what format 1 applied stays
        assert node.stop() == 0

        # Pinned again: an agreed format never goes back; the node applies it.
        node = NodeProcess(data, "--log-format", "1").start()
        client = Client(node.grpc)
        assert client.cluster_status().log_format == LOG_FORMAT
        wait_until(lambda: f"already agreed on format {LOG_FORMAT}" in node.text)
        queue = client.queue("n", "q")
        queue.enqueue(b"third")
        (held,) = queue.dequeue()
        held.ack(result=b"kept")
        assert queue.get(held.id).result == b"kept"
    finally:
        node.kill()


def test_a_log_format_this_build_does_not_have_is_refused(tmp_path: Path) -> None:
    node = NodeProcess(str(tmp_path), "--log-format", str(LOG_FORMAT + 1))
    with pytest.raises(RuntimeError, match="did not become ready"):
        node.start(timeout=10)
    assert f"log_format: must be 1 to {LOG_FORMAT}" in node.text
