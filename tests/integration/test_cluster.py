"""A 3-node Raft cluster of real processes: writes reach the leader from any
member, NotLeader names the leader's gRPC address, and the cluster keeps
serving when the leader is killed, with nothing acknowledged lost."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kokaq.client import Client, RetryPolicy
from kokaq.core import FailedPrecondition, InvalidArgument, KokaqError, MessageState, NotLeader
from tests.integration.nodes import (
    NodeProcess,
    Producers,
    free_ports,
    leader_of,
    start_cluster,
    start_together,
    wait_until,
)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[NodeProcess]]:
    nodes = start_cluster(str(tmp_path))
    yield nodes
    for node in nodes:
        node.kill()


def replica_states(nodes: list[NodeProcess]) -> set[tuple[int, str | None]]:
    """Each member's (applied index, engine digest); one element when they agree."""
    found = set()
    for node in nodes:
        with Client(node.grpc, retry=RetryPolicy(timeout=0)) as direct:
            status = direct.cluster_status(with_digest=True)
        found.add((status.applied_index, status.state_digest))
    return found


def test_any_member_takes_writes_and_names_the_leader(cluster: list[NodeProcess]) -> None:
    leader = leader_of(cluster)
    follower = next(n for n in cluster if n is not leader)
    # A follower answers NotLeader with the leader's gRPC address (once announced).
    with Client(follower.grpc, retry=RetryPolicy(timeout=0)) as direct:

        def hint() -> str | None:
            try:
                direct.list_namespaces()
            except NotLeader as error:
                return error.leader_hint
            return None

        wait_until(lambda: hint() == leader.grpc, timeout=10)
    # Every member reports the same leader and its two partners.
    for node in cluster:
        with Client(node.grpc, retry=RetryPolicy(timeout=0)) as direct:
            status = direct.cluster_status()
        assert status.role == ("leader" if node is leader else "follower")
        assert status.leader_grpc == leader.grpc and status.leader == leader.raft
        assert sorted(m.address for m in status.members) == sorted(
            n.raft for n in cluster if n is not node
        )
        assert status.has_quorum and status.applied_index <= status.commit_index
    # A client that knows only the follower follows the hint.
    with Client(follower.grpc) as client:
        client.create_namespace("n")
        client.create_queue("n", "q")
        results = client.queue("n", "q").enqueue_many([b"a", b"b", b"c"])
        assert [client.queue("n", "q").get(r.message_id).payload for r in results] == [
            b"a",
            b"b",
            b"c",
        ]
    # Over REST, a follower answers 503 naming the leader's gRPC and HTTP addresses.
    with httpx.Client(base_url=f"http://{follower.http}", timeout=10) as http:
        refused = http.post("/v1/jobs", json={"type": "t", "payload": 1})
        assert refused.status_code == 503
        error = refused.json()["error"]
        assert (error["code"], error["type"]) == ("UNAVAILABLE", "NotLeader")
        assert error["details"]["leader_hint"] == leader.grpc
        wait_until(lambda: http.get("/v1/cluster").json()["leader_http"] == leader.http)
        refused = http.post("/v1/jobs", json={"type": "t", "payload": 1})
        assert refused.json()["error"]["details"]["leader_http"] == leader.http
        assert http.get("/readyz").json()["ready"] is True  # a caught-up follower is ready
    with httpx.Client(base_url=f"http://{leader.http}", timeout=10) as http:
        assert http.post("/v1/jobs", json={"type": "t", "payload": 1}).status_code == 201


def test_leader_killed_under_load_loses_no_acknowledged_message(
    cluster: list[NodeProcess],
) -> None:
    addresses = [n.grpc for n in cluster]
    with Client(addresses) as client:
        client.create_namespace("n")
        client.create_queue("n", "q")  # dedup on: a retried batch must not add twice
    acknowledged: list[str] = []
    stop = threading.Event()
    failures: list[BaseException] = []

    def produce() -> None:
        with Client(addresses, retry=RetryPolicy(timeout=20)) as producer:
            q = producer.queue("n", "q")
            while not stop.is_set():
                try:
                    acknowledged.extend(r.message_id for r in q.enqueue_many([b"m"] * 20))
                except KokaqError as error:  # not expected: retries outlast a failover
                    failures.append(error)
                    return

    threads = [threading.Thread(target=produce) for _ in range(2)]
    for t in threads:
        t.start()
    wait_until(lambda: len(acknowledged) >= 1_000, timeout=20)
    old = leader_of(cluster)
    old.kill()
    survivors = [n for n in cluster if n is not old]
    new = leader_of(survivors)
    assert new is not old
    before = len(acknowledged)
    wait_until(lambda: len(acknowledged) >= before + 1_000, timeout=20)  # writes go on
    stop.set()
    for t in threads:
        t.join(30)
    assert failures == []
    with Client([n.grpc for n in survivors]) as client:
        q = client.queue("n", "q")
        assert len(set(acknowledged)) == len(acknowledged)
        assert q.stats().ready == len(acknowledged)  # exactly once, across the failover
        missing = [i for i in acknowledged if q.get(i).state is not MessageState.READY]
        assert missing == []


def test_whole_cluster_crash_loop_loses_nothing_and_replicas_converge(tmp_path: Path) -> None:
    """SIGKILL every member under load, restart them, again and again (with
    compaction forced often): acknowledged messages all survive, and every
    replica ends with the same engine state (a digest of its snapshot)."""
    rounds = int(os.environ.get("KOKAQ_CRASH_ROUNDS", "3"))
    nodes = start_cluster(str(tmp_path), args=("--compaction-entries", "40"))

    def addresses() -> list[str]:
        return [n.grpc for n in nodes]  # gRPC ports change on every restart

    acknowledged: list[str] = []
    rng = random.Random(11)
    try:
        with Client(addresses()) as client:
            client.create_namespace("n")
            client.create_queue("n", "q")
        for _ in range(rounds):
            producers = Producers(addresses(), acknowledged, threads=2, batch=25, retry_timeout=1.0)
            time.sleep(rng.uniform(0.5, 1.5))
            for node in nodes:
                node.kill()
            producers.stop()
            start_together(nodes)

        with Client(addresses()) as client:
            q = client.queue("n", "q")
            assert len(acknowledged) >= 500
            assert len(set(acknowledged)) == len(acknowledged)
            missing = [i for i in acknowledged if q.get(i).state is not MessageState.READY]
            assert missing == []
            # Beyond the acknowledged: at most the batches whose answer the kill cut off.
            assert len(acknowledged) <= q.stats().ready <= len(acknowledged) + rounds * 2 * 25

        wait_until(lambda: len(replica_states(nodes)) == 1, timeout=20)
    finally:
        for node in nodes:
            node.kill()


def test_a_follower_that_missed_compaction_catches_up_from_a_snapshot(tmp_path: Path) -> None:
    """PySyncObj defect 4's ground: a member down while the log compacted comes
    back through a snapshot install, with writes in flight, and converges."""
    nodes = start_cluster(str(tmp_path), args=("--compaction-entries", "20"))
    try:
        with Client([n.grpc for n in nodes]) as client:
            client.create_namespace("n")
            client.create_queue("n", "q")
            leader = leader_of(nodes)
            follower = next(n for n in nodes if n is not leader)
            follower.kill()
            q = client.queue("n", "q")
            acknowledged = []
            for _ in range(120):  # 120 entries: several compactions on the two left
                acknowledged += [r.message_id for r in q.enqueue_many([b"m"] * 10)]
            assert not os.path.exists(os.path.join(follower.data_dir, "raft.dump"))
            follower.start()
            for _ in range(20):  # writes while it installs the snapshot
                acknowledged += [r.message_id for r in q.enqueue_many([b"m"] * 10)]
            # It had no dump of its own: the one it loaded came from the leader.
            wait_until(lambda: "loaded a snapshot" in follower.text, timeout=20)
            assert q.stats().ready == len(acknowledged) == 1_400

        wait_until(lambda: len(replica_states(nodes)) == 1, timeout=20)
    finally:
        for node in nodes:
            node.kill()


def test_a_paused_leader_is_replaced_and_rejoins_as_a_follower(tmp_path: Path) -> None:
    """A partition by SIGSTOP: the majority elects a new leader and takes writes;
    the old leader, resumed, steps down, catches up, and agrees with the rest."""
    nodes = start_cluster(str(tmp_path))
    try:
        with Client([n.grpc for n in nodes]) as client:
            client.create_namespace("n")
            client.create_queue("n", "q")
            old = leader_of(nodes)
            assert old.process is not None
            old.process.send_signal(signal.SIGSTOP)
            majority = [n for n in nodes if n is not old]
            new = leader_of(majority)
            acknowledged = []
            with Client([n.grpc for n in majority]) as writer:
                for _ in range(20):
                    q = writer.queue("n", "q")
                    acknowledged += [r.message_id for r in q.enqueue_many([b"m"] * 10)]
            old.process.send_signal(signal.SIGCONT)

            def stepped_down() -> bool:
                with Client(old.grpc, retry=RetryPolicy(timeout=0)) as direct:
                    status = direct.cluster_status()
                return status.role == "follower" and status.leader_grpc == new.grpc

            wait_until(stepped_down, timeout=15)
            q = client.queue("n", "q")
            assert q.stats().ready == len(acknowledged) == 200
        wait_until(lambda: len(replica_states(nodes)) == 1, timeout=20)
    finally:
        for node in nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGCONT)
            node.kill()


def test_members_join_leave_and_hand_over_leadership_under_load(
    cluster: list[NodeProcess], tmp_path: Path
) -> None:
    addresses = [n.grpc for n in cluster]
    with Client(addresses) as client:
        client.create_namespace("n")
        client.create_queue("n", "q")
    raft4 = f"127.0.0.1:{free_ports(1)[0]}"
    peers = ",".join(n.raft for n in cluster)
    secret = ("--cluster-secret", "cluster-secret-1")
    fourth = NodeProcess(str(tmp_path / "node3"), "--peers", peers, *secret, raft_listen=raft4)
    acknowledged: list[str] = []
    producers = Producers(addresses, acknowledged, threads=2, batch=20, retry_timeout=20)
    try:
        wait_until(lambda: len(acknowledged) >= 500, timeout=20)
        # A fourth member: started with the group as peers, then added.
        starting = threading.Thread(target=fourth.start, kwargs={"timeout": 30})
        starting.start()
        with Client(addresses) as admin:
            with pytest.raises(InvalidArgument) as bad:
                admin.add_member("no-port")
            assert bad.value.field == "address"
            status = admin.add_member(raft4)
            assert raft4 in [m.address for m in status.members]
            starting.join(40)
            assert fourth.grpc, fourth.text
            members = [*cluster, fourth]
            # Leadership handed to a chosen follower.
            old = leader_of(members)
            target = next(n for n in cluster if n is not old)
            status = admin.transfer_leadership(target.raft)
            assert status.leader == target.raft
            assert leader_of(members) is target
            with pytest.raises(FailedPrecondition):
                admin.transfer_leadership("127.0.0.1:1")  # not a member
            # The old leader leaves; the group of three goes on.
            status = admin.remove_member(old.raft)
            assert old.raft not in [m.address for m in status.members]
            old.kill()
        members = [n for n in members if n is not old]
        before = len(acknowledged)
        wait_until(lambda: len(acknowledged) >= before + 500, timeout=20)
        producers.stop()

        with Client([n.grpc for n in members]) as client:
            q = client.queue("n", "q")
            assert len(set(acknowledged)) == len(acknowledged)
            assert q.stats().ready == len(acknowledged)  # nothing lost, nothing twice
        wait_until(lambda: len(replica_states(members)) == 1, timeout=20)
        expected = sorted(n.raft for n in members if n is not fourth)
        with Client(fourth.grpc, retry=RetryPolicy(timeout=0)) as direct:
            wait_until(
                lambda: sorted(m.address for m in direct.cluster_status().members) == expected
            )
    finally:
        producers.stop()
        fourth.kill()  # the three others are the fixture's
