"""A 3-node Raft cluster of real processes: writes reach the leader from any
member, NotLeader names the leader's gRPC address, and the cluster keeps
serving when its leader is killed, paused or cut off by the network, and
when every member crashes. The fault tests run producers and consumers whose
every call is recorded and checked (tests/integration/history.py); PySyncObj's
defects are re-checked here on a cluster."""

from __future__ import annotations

import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from kokaq.client import Client, RetryPolicy, calls
from kokaq.core import FailedPrecondition, InvalidArgument, MessageSpec, NotLeader, Unavailable
from kokaq.protocol.v1 import kokaq_pb2 as pb
from kokaq.server.log_format import LOG_FORMAT
from tests.integration import netns
from tests.integration.history import (
    History,
    Op,
    Workload,
    check_cluster,
    create_checked_queue,
)
from tests.integration.nodes import (
    NodeProcess,
    Producers,
    free_ports,
    leader_of,
    send_pickle,
    start_cluster,
    start_together,
    wait_until,
)
from tests.integration.scrape import scrape, value


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[NodeProcess]]:
    nodes = start_cluster(str(tmp_path))
    yield nodes
    for node in nodes:
        node.kill()


def journal(node: NodeProcess) -> tuple[float, float]:
    """(entries kept when PySyncObj deleted them on a resend, entries dropped
    on a term conflict), from the node's metrics."""
    with httpx.Client(base_url=f"http://{node.http}", timeout=10) as http:
        samples = scrape(http)
    return (
        value(samples, "kokaq_raft_journal_kept_on_resend_total"),
        value(samples, "kokaq_raft_journal_dropped_on_conflict_total"),
    )


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


def test_raft_ports_bind_only_their_address_and_run_no_pickles(
    cluster: list[NodeProcess], tmp_path: Path
) -> None:
    """PySyncObj defect 5, re-checked on every member of a cluster: its Raft port
    listens on the address given (not 0.0.0.0: 127.0.0.2 reaches 0.0.0.0 on
    Linux, not 127.0.0.1), and what reaches it is never unpickled."""
    with Client([n.grpc for n in cluster]) as client:
        client.create_namespace("n")
        client.create_queue("n", "q")
        for index, node in enumerate(cluster):
            port = int(node.raft.rsplit(":", 1)[1])
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.2", port), timeout=5).close()
            marker = tmp_path / f"pwned{index}"
            send_pickle(node.raft, marker)
            assert not marker.exists()
        client.queue("n", "q").enqueue(b"still serving")
        assert client.queue("n", "q").stats().ready == 1
    wait_until(lambda: len(replica_states(cluster)) == 1, timeout=20)


def test_leader_killed_under_load_keeps_every_promise(cluster: list[NodeProcess]) -> None:
    """Producers and consumers run while the leader is SIGKILLed; their calls
    retry through the failover, and the history they leave breaks no promise."""
    addresses = [n.grpc for n in cluster]
    with Client(addresses) as client:
        create_checked_queue(client)
    history = History()
    workload = Workload(lambda: addresses, history)
    try:
        wait_until(lambda: history.acks_since() >= 300, timeout=30)
        old = leader_of(cluster)
        # PySyncObj defect 3, re-checked: under load it deletes entries that
        # followers had acknowledged each time the leader resends them; kokaq's
        # journal keeps them (no term conflict), so the failover below loses none.
        followers = [n for n in cluster if n is not old]
        wait_until(lambda: sum(journal(n)[0] for n in followers) > 0, timeout=30)
        assert [journal(n)[1] for n in cluster] == [0, 0, 0]
        old.kill()
        killed_at = time.time()
        survivors = [n for n in cluster if n is not old]
        assert leader_of(survivors) is not old
        wait_until(lambda: history.acks_since(killed_at) >= 300, timeout=30)  # work goes on
    finally:
        workload.stop()
    # Retries outlast a failover: no call was left with an unknown outcome.
    assert [o for o in history.ops if o.outcome == "info"] == []
    assert history.of("nack", "ok") and history.of("enqueue", "ok")
    with Client([n.grpc for n in survivors]) as client:
        assert check_cluster(history, client) == []


def test_whole_cluster_crash_loop_keeps_every_promise_and_replicas_converge(
    tmp_path: Path,
) -> None:
    """SIGKILL every member under load, restart them, again and again (with
    compaction forced often): the clients' history breaks no promise, and every
    replica ends with the same engine state (a digest of its snapshot)."""
    rounds = int(os.environ.get("KOKAQ_CRASH_ROUNDS", "3"))
    nodes = start_cluster(str(tmp_path), args=("--compaction-entries", "40"))

    def addresses() -> list[str]:
        return [n.grpc for n in nodes]  # gRPC ports change on every restart

    history = History()
    rng = random.Random(11)
    try:
        with Client(addresses()) as client:
            create_checked_queue(client)
        for round_ in range(rounds):
            workload = Workload(addresses, history, retry_timeout=1.0, seed=10 * round_)
            time.sleep(rng.uniform(1.0, 2.0))
            # With compaction every 40 entries, kills often land while a member's
            # dump writer (a forked child) is at work; it outlives the kill, and
            # must change nothing (test_node's orphan test freezes one to be sure).
            for node in nodes:
                node.kill()
            workload.stop()
            start_together(nodes)

        assert history.acks_since() >= 100 and history.of("enqueue", "ok")
        with Client(addresses()) as client:
            assert check_cluster(history, client) == []
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


STRANDED, MINORITY = 98, 99  # the process numbers of two writes sent to a paused leader


@contextmanager
def under_checked_load(
    nodes: list[NodeProcess], release: Callable[[], None], consumers: int = 2
) -> Iterator[tuple[list[str], History, NodeProcess, Workload]]:
    """The checked queue on a cluster and a recorded workload on it, once 200
    messages are acked: (client addresses, history, leader, workload). On the
    way out the clients stop, ``release`` frees and kills the members (resumes
    or heals them first, so the clients' calls end), then the clients are joined."""
    addresses = [n.grpc for n in nodes]
    history = History()
    workload = None
    try:
        with Client(addresses) as client:
            create_checked_queue(client)
        leader = leader_of(nodes)
        workload = Workload(lambda: addresses, history, consumers=consumers)
        wait_until(lambda: history.acks_since() >= 200, timeout=30)
        yield addresses, history, leader, workload
    finally:
        if workload is not None:
            workload.stopping.set()
        release()
        if workload is not None:
            workload.stop()


def test_a_paused_leader_is_replaced_and_rejoins_as_a_follower(tmp_path: Path) -> None:
    """A partition by SIGSTOP, under load: the majority elects a new leader and
    serves (the SDK's keepalive pings find the silent node in seconds); the
    paused leader takes no write; resumed, it steps down, installs a snapshot
    (PySyncObj defect 4's ground: the writes it had in flight get an answer, not
    silence), catches up and agrees with the rest. The history breaks no promise
    (it found defect 6: the resumed node applied, and answered as done, writes
    that nobody had committed)."""
    nodes = start_cluster(str(tmp_path), args=("--compaction-entries", "20"))

    def resume_and_kill() -> None:
        for node in nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGCONT)
            node.kill()

    with under_checked_load(nodes, resume_and_kill, consumers=3) as loaded:
        addresses, history, old, workload = loaded
        assert old.process is not None
        old.process.send_signal(signal.SIGSTOP)
        paused_at = time.time()
        # A write sent to the paused leader on a plain channel (no keepalive): it
        # waits in the socket until the node resumes.
        channel = grpc.insecure_channel(old.grpc)
        stranded = calls.enqueue("n", "q", MessageSpec(payload=b"stranded", dedup_key="s1"))
        in_flight = channel.unary_unary(
            "/kokaq.v1.DataPlane/Enqueue",
            request_serializer=pb.EnqueueRequest.SerializeToString,
            response_deserializer=pb.EnqueueResult.FromString,
        ).future(stranded.request, timeout=60)
        majority = [n for n in nodes if n is not old]
        new = leader_of(majority)
        direct = Client(old.grpc, timeout=1, retry=RetryPolicy(timeout=0))
        invoked = time.time()
        with direct, pytest.raises(Unavailable):  # the minority takes no write
            direct.queue("n", "q").enqueue(b"to the minority")
        # It waits in the paused node's socket too: once resumed, the node may
        # still pass it to the new leader. Its outcome is unknown.
        history.add(Op(MINORITY, "enqueue", invoked, time.time(), "info", count=1))
        wait_until(
            lambda: history.acks_since(paused_at) >= 300,
            timeout=30,
        )
        snapshots_before = old.text.count("loaded a snapshot")
        old.process.send_signal(signal.SIGCONT)
        resumed_at = time.monotonic()
        try:
            answer = in_flight.result()
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE  # not the deadline
            history.add(Op(STRANDED, "enqueue", paused_at, time.time(), "info", count=1))
        else:  # resumed as a follower, it passed the write on to the new leader
            history.add(
                Op(STRANDED, "enqueue", paused_at, time.time(), "ok", (answer.message_id,), count=1)
            )
        assert time.monotonic() - resumed_at < 10
        channel.close()

        def stepped_down() -> bool:
            with Client(old.grpc, retry=RetryPolicy(timeout=0)) as direct:
                status = direct.cluster_status()
            return status.role == "follower" and status.leader_grpc == new.grpc

        wait_until(stepped_down, timeout=15)
        wait_until(lambda: old.text.count("loaded a snapshot") > snapshots_before, timeout=15)
        resumed = time.time()
        wait_until(
            lambda: history.acks_since(resumed) >= 100,
            timeout=30,
        )
        workload.stop()
        unknown = [o for o in history.ops if o.outcome == "info"]
        assert [o for o in unknown if o.process not in (STRANDED, MINORITY)] == []  # the workload's
        with Client(addresses) as client:
            assert check_cluster(history, client) == []
        wait_until(lambda: len(replica_states(nodes)) == 1, timeout=20)


MINORITY_WRITE = """
from kokaq.client import Client, RetryPolicy
from kokaq.core import KokaqError
with Client({address!r}, timeout=3, retry=RetryPolicy(timeout=3)) as client:
    try:
        client.queue("n", "q").enqueue(b"from the minority", dedup_key="minority-1")
        print("ACCEPTED")
    except KokaqError as error:
        print("REFUSED", type(error).__name__)
"""


@pytest.mark.skipif(not netns.available(), reason="needs root and iproute2 network namespaces")
def test_a_leader_cut_off_by_the_network_steps_down_and_rejoins(tmp_path: Path) -> None:
    """A real partition: each member in its own network namespace; the leader's
    link is cut while it runs on. The majority elects a leader and serves the
    clients; a client on the minority side gets no write accepted, and the
    cut-off leader steps down on its own; healed, it rejoins and converges (it
    found PySyncObj defect 7: a rejoining member whose log had a divergent tail
    of two entries or more never caught up). The clients' history breaks no
    promise."""
    with netns.Network(3) as network:
        nodes = start_cluster(str(tmp_path), hosts=network.hosts, prefixes=network.prefixes)

        def heal_and_kill() -> None:
            for member in range(3):
                network.heal(member)
            for node in nodes:
                node.kill()

        with under_checked_load(nodes, heal_and_kill) as (addresses, history, old, workload):
            cut = nodes.index(old)
            network.cut(cut)
            cut_at = time.time()
            majority = [n for n in nodes if n is not old]
            majority_grpc = {n.grpc for n in majority}
            assert leader_of(majority) is not old  # the majority elects its own
            answer = network.run_inside(cut, MINORITY_WRITE.format(address=old.grpc), timeout=60)
            assert "REFUSED" in answer, answer
            # Cut off from any majority, it stops calling itself leader (and
            # stops serving leader reads) within the leader fallback (2 s).
            status = network.run_inside(
                cut,
                "from kokaq.client import Client\n"
                f"print(Client({old.grpc!r}).cluster_status().role)",
                timeout=30,
            )
            assert status.split()[-1] in ("follower", "candidate"), status
            wait_until(
                lambda: history.acks_since(cut_at) >= 300,
                timeout=30,
            )
            network.heal(cut)

            def rejoined() -> bool:  # its higher term may force one more election
                try:
                    with Client(old.grpc, retry=RetryPolicy(timeout=0)) as direct:
                        status = direct.cluster_status()
                except Unavailable:  # the link is back; the connection not yet
                    return False
                return status.role == "follower" and status.leader_grpc in majority_grpc

            wait_until(rejoined, timeout=20)
            workload.stop()
            assert [o for o in history.ops if o.outcome == "info"] == []
            with Client(addresses) as client:
                assert check_cluster(history, client) == []
                again = client.queue("n", "q").enqueue(b"x", dedup_key="minority-1")
                assert not again.duplicate  # the minority's write never applied
            wait_until(lambda: len(replica_states(nodes)) == 1, timeout=20)


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


def test_a_rolling_upgrade_agrees_on_a_newer_log_format_once_every_member_applies_it(
    tmp_path: Path,
) -> None:
    """One member held to log format 1 stands for the member not upgraded yet:
    the others keep every write in terms it applies (no results, no progress),
    so the replicas never differ; once it runs unpinned, the cluster agrees
    on the newest format and keeps them."""
    nodes = start_cluster(str(tmp_path), member_args=[(), (), ("--log-format", "1")])
    last = nodes[2]
    try:

        def statuses() -> list[calls.ClusterStatus]:
            found = []
            for node in nodes:
                with Client(node.grpc, retry=RetryPolicy(timeout=0)) as direct:
                    found.append(direct.cluster_status())
            return found

        def announced_formats() -> list[int | None]:
            return [status.node_log_format for status in statuses()]

        wait_until(lambda: announced_formats() == [LOG_FORMAT, LOG_FORMAT, 1], timeout=20)
        time.sleep(1.0)  # two rounds of the members' agreement loop
        assert [status.log_format for status in statuses()] == [1, 1, 1]
        leader = leader_of(nodes)
        (seen_by_leader,) = [s for s in statuses() if s.role == "leader"]
        assert sorted((m.address, m.log_format) for m in seen_by_leader.members) == sorted(
            (n.raft, 1 if n is last else LOG_FORMAT) for n in nodes if n is not leader
        )

        def run_job(client: Client, payload: bytes) -> str:
            queue = client.queue("n", "q")
            queue.enqueue(payload)
            (held,) = queue.dequeue()
            held.report_progress({"at": payload.decode()})
            held.ack(result=payload)
            return held.id

        with Client(nodes[0].grpc) as client:
            client.create_namespace("n")
            client.create_queue("n", "q")
            before = run_job(client, b"before")
            view = client.queue("n", "q").get(before)
            assert (view.result, view.progress) == (None, None)
        wait_until(lambda: len(replica_states(nodes)) == 1, timeout=20)

        last.stop()
        last.args = last.args[:-2]  # the upgrade's last step: run it as the others
        last.start()
        wait_until(lambda: [s.log_format for s in statuses()] == [LOG_FORMAT] * 3, timeout=20)
        with Client(nodes[0].grpc) as client:
            after = run_job(client, b"after")
            view = client.queue("n", "q").get(after)
            assert (view.result, view.progress) == (b"after", '{"at":"after"}')
            assert client.queue("n", "q").get(before).result is None
        wait_until(lambda: len(replica_states(nodes)) == 1, timeout=20)
        with httpx.Client(base_url=f"http://{last.http}", timeout=10) as http:
            assert value(scrape(http), "kokaq_raft_log_format") == LOG_FORMAT
    finally:
        for node in nodes:
            node.kill()


def test_a_schedule_fires_once_per_time_through_a_leader_failover(
    cluster: list[NodeProcess],
) -> None:
    """Every second a job; the leader is SIGKILLed; the new leader goes on from
    the fire time the log says the schedule waits for: no time fires twice
    (each fire that enqueued counts once, and jobs are one per time), and
    only times that passed while no node led are missing."""
    old = leader_of(cluster)

    def get(node: NodeProcess, path: str, **params: Any) -> Any:
        with httpx.Client(base_url=f"http://{node.http}", timeout=10) as http:
            return http.get(path, params=params).json()

    def fired_on(node: NodeProcess) -> int:
        return int(get(node, "/v1/schedules/tick")["fired"])

    with httpx.Client(base_url=f"http://{old.http}", timeout=10) as http:
        body = {"cron": "* * * * * *", "type": "tick", "payload": 1, "queue": "ticks"}
        assert http.put("/v1/schedules/tick", json=body).status_code == 200
    wait_until(lambda: fired_on(old) >= 3, timeout=15)
    old.kill()
    killed_at = time.time()
    new = leader_of([n for n in cluster if n is not old])
    elected_at = time.time()
    before = fired_on(new)
    wait_until(lambda: fired_on(new) >= before + 3, timeout=15)
    time.sleep(0.5)  # a fire in flight lands
    jobs = get(new, "/v1/jobs", queue="ticks", limit=1000)["jobs"]
    times = sorted(int(job["idempotency_key"].rsplit(":", 1)[1]) for job in jobs)
    assert len(jobs) == fired_on(new)  # no fire enqueued twice
    assert len(set(times)) == len(times)
    missing = [t for t in range(times[0], times[-1], 1000) if t not in times]
    assert all(killed_at * 1000 - 1000 < t < elected_at * 1000 for t in missing), (
        missing,
        killed_at,
        elected_at,
    )
