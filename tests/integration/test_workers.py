"""Real worker processes (``kokaq worker``) against a real node: jobs pushed
over the lease stream, retries into the DLQ, heartbeats, SIGTERM, weights."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from queue import SimpleQueue
from typing import Any

import grpc
import httpx
import pytest

from kokaq.client import AsyncGrpcTransport, Client, GrpcTransport, Job, Producer, Worker
from kokaq.client.transport import END_LEASE, SETTLE, SETTLE_MANY
from kokaq.core import Headers, InvalidArgument, NotFound, QueueConfig
from kokaq.protocol.v1 import kokaq_pb2 as pb
from tests.integration.nodes import NodeProcess, free_ports, leader_of, start_cluster, wait_until
from tests.integration.scrape import scrape
from tests.integration.worker_processes import Workers


@pytest.fixture(scope="module")
def http(node: NodeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{node.http}", timeout=10) as client:
        yield client


@pytest.fixture
def workers(node: NodeProcess, tmp_path: Path) -> Iterator[Workers]:
    running = Workers(node, tmp_path)
    yield running
    running.stop_all()


def make_queue(http: httpx.Client, **config: Any) -> str:
    name = f"w-{uuid.uuid4().hex[:8]}"
    http.post("/v1/namespaces", json={"name": "default"})  # exists after the first test
    response = http.post("/v1/namespaces/default/queues", json={"name": name, "config": config})
    assert response.status_code == 201, response.text
    return name


def submit(http: httpx.Client, queue: str, job_type: str, payload: Any = 0, **job: Any) -> str:
    body = {"type": job_type, "payload": payload, "queue": queue, **job}
    response = http.post("/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def job(http: httpx.Client, job_id: str) -> dict[str, Any]:
    return dict(http.get(f"/v1/jobs/{job_id}").json())


def statuses(http: httpx.Client, ids: list[str]) -> Counter[str]:
    return Counter(job(http, i)["status"] for i in ids)


def test_jobs_succeed_and_each_runs_once(http: httpx.Client, workers: Workers) -> None:
    queue = make_queue(http)
    ids = [submit(http, queue, "ok", {"n": n}) for n in range(30)]
    workers.start(queue, "--concurrency", "4")
    wait_until(lambda: statuses(http, ids)["succeeded"] == 30, timeout=30)
    ran = [row[0] for row in workers.lines()]
    assert sorted(ran) == sorted(ids)  # each exactly once
    assert all(job(http, i)["attempts"] == 1 for i in ids[:3])

    # An idle worker is pushed a new job at once: no polling interval to wait out.
    before = time.time()
    late = submit(http, queue, "ok", "late")
    wait_until(lambda: job(http, late)["status"] == "succeeded", timeout=10)
    started = float(next(row for row in workers.lines() if row[0] == late)[3])
    assert started - before < 1.5  # the node re-checks idle sessions only every 2 s


def test_failing_handler_retries_with_backoff_then_dead_letters(
    http: httpx.Client, workers: Workers
) -> None:
    queue = make_queue(http, backoff={"base_ms": 200, "factor": 2.0})
    failing = submit(http, queue, "fail", max_retries=2)
    unknown = submit(http, queue, "no_such_type", max_retries=0)
    workers.start(queue)
    wait_until(lambda: job(http, failing)["status"] == "dead", timeout=30)
    dead = job(http, failing)
    assert (dead["attempts"], dead["last_error"]) == (3, "ValueError: boom")
    runs = sorted(float(row[3]) for row in workers.lines() if row[0] == failing)
    assert len(runs) == 3
    assert runs[1] - runs[0] >= 0.2 and runs[2] - runs[1] >= 0.4  # 200 ms, then 400 ms
    wait_until(lambda: job(http, unknown)["status"] == "dead", timeout=10)
    orphan = job(http, unknown)
    assert orphan["failure_reason"] == "unauthorized_handler"
    assert "no handler for job type 'no_such_type'" in orphan["last_error"]
    dlq = http.get("/v1/dlq", params={"queue": queue}).json()["jobs"]
    assert {j["id"] for j in dlq} == {failing, unknown}


def test_a_long_handler_keeps_its_lease_by_heartbeats(http: httpx.Client, workers: Workers) -> None:
    queue = make_queue(http, visibility_timeout_ms=1_000)
    long_job = submit(http, queue, "slow", {"seconds": 3.5})
    workers.start(queue, "--concurrency", "2")
    workers.start(queue, "--concurrency", "2")  # would take the job if its lease ran out
    wait_until(lambda: job(http, long_job)["status"] == "succeeded", timeout=30)
    assert job(http, long_job)["attempts"] == 1
    assert len(workers.lines("start")) == 1 and len(workers.lines("end")) == 1


def test_what_a_handler_returns_is_the_job_s_result(http: httpx.Client, workers: Workers) -> None:
    queue = make_queue(http)
    job_id = submit(http, queue, "answer", {"to": "a@example.com"})
    workers.start(queue)
    wait_until(lambda: job(http, job_id)["status"] == "succeeded", timeout=30)
    assert job(http, job_id)["result"] == {"echo": {"to": "a@example.com"}, "attempt": 1}


def test_a_handler_s_progress_shows_on_the_job_as_it_runs(
    http: httpx.Client, workers: Workers
) -> None:
    queue = make_queue(http)
    job_id = submit(http, queue, "steps", {"steps": 4, "seconds": 0.6})
    workers.start(queue)
    seen: list[int] = []
    deadline = time.monotonic() + 30
    while (now := job(http, job_id))["status"] != "succeeded" and time.monotonic() < deadline:
        if now["progress"] is not None and now["progress"]["step"] not in seen:
            seen.append(now["progress"]["step"])
        time.sleep(0.05)
    assert len(seen) >= 2 and seen == sorted(seen), seen  # reported as it ran, in order
    done = job(http, job_id)
    assert (done["status"], done["progress"]) == ("succeeded", {"step": 4, "of": 4})


def test_handlers_past_their_timeout_are_nacked_as_handler_timeout(
    http: httpx.Client, workers: Workers
) -> None:
    """``--job-timeout`` cancels an async handler; a plain function with its
    own ``timeout=0.5`` is nacked at 0.5 s and keeps the one place until it
    returns, so the next job starts after its end."""
    queue = make_queue(http)
    slow = submit(http, queue, "slow", {"seconds": 30}, max_retries=0)
    hung = submit(http, queue, "hang", {"seconds": 2}, max_retries=0)
    after = submit(http, queue, "ok")
    process = workers.start(queue, "--concurrency", "1", "--job-timeout", "1")
    wait_until(lambda: job(http, after)["status"] == "succeeded", timeout=30)
    for job_id, seconds in ((slow, "1"), (hung, "0.5")):
        timed_out = job(http, job_id)
        assert (timed_out["status"], timed_out["failure_reason"], timed_out["attempts"]) == (
            "dead",
            "handler_timeout",
            1,
        )
        assert timed_out["last_error"] == f"TimeoutError: handler ran past its {seconds} s timeout"
    ends = {row[0]: float(row[3]) for row in workers.lines("end")}
    assert slow not in ends  # cancelled, not left running
    (ran,) = workers.lines("ran")
    assert ran[0] == after and float(ran[3]) >= ends[hung]  # its place was taken until then
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0
    refused = workers.start(queue, "--job-timeout", "0")
    assert refused.wait(20) == 2
    assert "--job-timeout" in workers.output(1)


def test_sigterm_mid_job_loses_nothing_and_runs_nothing_twice(
    http: httpx.Client, workers: Workers
) -> None:
    queue = make_queue(http)
    ids = [submit(http, queue, "slow", {"seconds": 1.5}) for _ in range(6)]
    first = workers.start(queue, "--concurrency", "2", "--grace", "10")
    wait_until(lambda: len(workers.lines("start")) == 2, timeout=20)
    first.send_signal(signal.SIGTERM)
    assert first.wait(20) == 0
    # It held four (its prefetch is twice its concurrency): the two running
    # finished within the grace and were acked, the two waiting were released.
    assert "stopped: 4 jobs settled" in workers.output(0)
    assert len(workers.lines("end")) == 2
    counts = statuses(http, ids)
    assert counts == {"succeeded": 2, "pending": 4}, counts
    assert all(job(http, i)["attempts"] == 0 for i in ids if job(http, i)["status"] == "pending")

    workers.start(queue, "--concurrency", "4")
    wait_until(lambda: statuses(http, ids)["succeeded"] == 6, timeout=30)
    ended = [row[0] for row in workers.lines("end")]
    assert sorted(ended) == sorted(ids)  # every job ran to its end exactly once


OK_JOB = Headers(content_type="application/json", type="ok")


def test_sigterm_under_arrivals_leaves_no_job_leased(http: httpx.Client, workers: Workers) -> None:
    """A worker stopping while jobs keep arriving ends its lease stream with
    EndLease and reads it to the end: the jobs leased for it meanwhile are
    given back at once, not left to wait out their 30 s lease."""
    queue = make_queue(http)
    process = workers.start(queue, "--concurrency", "2")
    with Client(workers.node.grpc) as client:
        with Producer(client, "default", queue, linger_ms=0) as producer:
            sent = 0

            def send(count: int) -> None:
                nonlocal sent
                for _ in range(count):
                    producer.send(b"0", headers=OK_JOB)
                    sent += 1
                    time.sleep(0.002)

            send(100)
            wait_until(lambda: len(workers.lines()) >= 20, timeout=20)
            process.send_signal(signal.SIGTERM)
            send(150)  # arrivals while it stops
        assert process.wait(20) == 0
        stats = client.queue("default", queue).stats()
    assert stats.leased == 0, (stats, workers.output(0))
    ran = len(workers.lines())
    assert stats.succeeded == ran and stats.ready == sent - ran, stats


def test_weighted_queues_split_as_configured(http: httpx.Client, workers: Workers) -> None:
    high, low = make_queue(http), make_queue(http)
    for queue in (high, low):
        batch = [{"payload": "{}", "headers": {"type": "ok", "content_type": "application/json"},
                  "max_deliveries": 4} for _ in range(200)]  # fmt: skip
        response = http.post(f"/v1/namespaces/default/queues/{queue}/messages",
                             json={"messages": batch})  # fmt: skip
        assert response.status_code == 201
    workers.start(f"{high}:3,{low}:1", "--concurrency", "1", "--prefetch", "1")
    wait_until(lambda: len(workers.lines()) >= 200, timeout=60)
    first = [row[1] for row in workers.lines()[:200]]
    share = first.count(high) / len(first)
    assert 0.70 <= share <= 0.80, share  # 3:1 is 0.75


def test_a_paused_queue_gives_its_workers_nothing_until_it_is_resumed(
    http: httpx.Client, workers: Workers
) -> None:
    """Pausing stops dispatch at once, for jobs already waiting and jobs
    submitted meanwhile (no Dequeue is proposed for them: the sessions park);
    a worker on several queues goes on with the others; resuming hands the
    waiting jobs out again."""
    paused, other = make_queue(http), make_queue(http)
    pause = http.post(f"/v1/namespaces/default/queues/{paused}/pause")
    assert pause.status_code == 200 and pause.json()["paused_at"] > 0
    waiting = [submit(http, paused, "ok", n) for n in range(3)]
    workers.start(f"{paused}:5,{other}:1", "--concurrency", "2")
    wait_until(lambda: len(http.get("/v1/workers").json()["workers"]) == 1, timeout=20)
    served = submit(http, other, "ok")
    wait_until(lambda: job(http, served)["status"] == "succeeded", timeout=10)

    def dequeues() -> float:
        labels = frozenset({"operation": "Dequeue"}.items())
        return scrape(http).get(("kokaq_commit_operations_total", labels), 0.0)

    proposed = dequeues()
    waiting += [submit(http, paused, "ok", n) for n in range(3, 6)]
    time.sleep(2.5)  # past the node's 2 s recheck of parked sessions
    assert dequeues() == proposed
    assert statuses(http, waiting) == Counter({"pending": 6})
    assert http.get(f"/v1/namespaces/default/queues/{paused}/stats").json()["paused"] is True
    gauge = ("kokaq_queue_paused", frozenset({"namespace": "default", "queue": paused}.items()))
    assert scrape(http)[gauge] == 1.0
    (shown,) = http.get("/v1/workers").json()["workers"]
    assert shown["paused_queues"] == [paused]

    resume = http.post(f"/v1/namespaces/default/queues/{paused}/resume")
    assert resume.status_code == 200 and resume.json()["paused_at"] is None
    wait_until(lambda: statuses(http, waiting)["succeeded"] == 6, timeout=20)
    assert sorted(row[0] for row in workers.lines()) == sorted([served, *waiting])
    assert scrape(http)[gauge] == 0.0
    assert http.get("/v1/workers").json()["workers"][0]["paused_queues"] == []


def test_node_restart_with_workers_connected_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """SIGTERM the node under running jobs: the lease streams end cleanly, the
    workers' settles wait for the node to come back (same address, same data),
    and every job runs once."""
    (port,) = free_ports(1)
    listen = ("--grpc-listen", f"127.0.0.1:{port}")
    node = NodeProcess(str(tmp_path / "data"), *listen).start()
    running = Workers(node, tmp_path)
    try:
        with httpx.Client(base_url=f"http://{node.http}", timeout=10) as http:
            queue = make_queue(http)
            ids = [submit(http, queue, "slow", {"seconds": 1.5}) for _ in range(8)]
        running.start(queue, "--concurrency", "4")
        wait_until(lambda: len(running.lines("start")) == 4, timeout=20)
        assert node.stop(signal.SIGTERM) == 0
        assert "kokaq node stopped" in node.text
        node = NodeProcess(str(tmp_path / "data"), *listen).start()
        with httpx.Client(base_url=f"http://{node.http}", timeout=10) as http:
            wait_until(lambda: statuses(http, ids)["succeeded"] == 8, timeout=60)
            attempts = [job(http, i)["attempts"] for i in ids]
            assert attempts == [1] * 8, running.output(0)  # no lease ran out, none repeated
        started = [row[0] for row in running.lines("start")]
        assert sorted(started) == sorted(ids)  # none started twice
        assert sorted(row[0] for row in running.lines("end")) == sorted(ids)
    finally:
        running.stop_all()
        node.kill()


@contextmanager
def lease_stream(node: NodeProcess, queue: str, credit: int) -> Iterator[Iterator[pb.LeaseEvent]]:
    """A raw ``Workers.Lease`` stream on ``queue``, opened as a worker opens
    it, and a transport for the calls a worker makes; closing ends the stream."""
    channel = grpc.insecure_channel(node.grpc)
    lease = channel.unary_stream(
        "/kokaq.v1.Workers/Lease",
        request_serializer=pb.LeaseRequest.SerializeToString,
        response_deserializer=pb.LeaseEvent.FromString,
    )
    request = pb.LeaseRequest(
        namespace="default", queues=[pb.QueueWeight(queue=queue)], credit=credit
    )
    try:
        yield iter(lease(request, timeout=30))
    finally:
        channel.close()


def test_end_lease_sends_what_is_leased_then_ends_the_stream(
    node: NodeProcess, http: httpx.Client
) -> None:
    queue = make_queue(http, visibility_timeout_ms=60_000)
    transport = GrpcTransport(node.grpc)
    with closing(transport), lease_stream(node, queue, credit=5) as events:
        session = next(events).session_id
        time.sleep(0.05)  # the session is waiting
        first = submit(http, queue, "ok", 1)
        (leased,) = next(events).jobs
        assert leased.id == first
        transport.call(END_LEASE, pb.EndLeaseRequest(session_id=session))
        assert list(events) == []  # the stream ends cleanly (a failure would raise)
        later = submit(http, queue, "ok", 2)
        time.sleep(0.3)  # time enough to lease it, were the session still there
        assert job(http, later)["status"] == "pending"
        assert job(http, first)["status"] == "leased"  # sent: the worker has it
        with pytest.raises(NotFound):
            transport.call(END_LEASE, pb.EndLeaseRequest(session_id=session))


def lock_of(message: pb.Message) -> pb.LockRef:
    return pb.LockRef(
        namespace=message.namespace,
        queue=message.queue,
        message_id=message.id,
        lock_id=message.lock_id,
    )


def test_a_waiting_worker_leases_a_job_in_the_log_entry_that_enqueues_it(
    node: NodeProcess, http: httpx.Client
) -> None:
    """A job enqueued while a session waits on its queue is leased by a Dequeue
    proposed right behind the enqueue: both apply in one Raft entry, stamped
    with one time, so the lease starts at the job's creation, to the ms."""
    queue = make_queue(http, visibility_timeout_ms=60_000)
    with lease_stream(node, queue, credit=8) as events:
        assert next(events).session_id
        for n in range(5):
            time.sleep(0.05)  # the session is waiting again
            job_id = submit(http, queue, "ok", n)
            (leased,) = next(events).jobs
            assert leased.id == job_id
            assert leased.lock_deadline - 60_000 == leased.created_at
        # Delayed jobs are left to become ready: nothing is leased early.
        delayed = submit(http, queue, "ok", "later", delay_seconds=1)
        (leased,) = next(events).jobs
        assert leased.id == delayed
        assert leased.lock_deadline - 60_000 >= leased.created_at + 1000


def test_jobs_handed_to_a_waiting_worker_stay_within_its_credit(
    node: NodeProcess, http: httpx.Client
) -> None:
    """Five jobs arrive at once for a session with credit 2: it is handed two,
    and the third only once it settles one."""
    queue = make_queue(http, visibility_timeout_ms=60_000)
    transport = GrpcTransport(node.grpc)
    with closing(transport), lease_stream(node, queue, credit=2) as events:
        session = next(events).session_id
        time.sleep(0.05)  # the session is waiting
        jobs = [{"type": "ok", "payload": n, "queue": queue} for n in range(5)]
        response = http.post("/v1/jobs/batch", json={"jobs": jobs})
        assert response.status_code == 201, response.text
        ids = [job["id"] for job in response.json()["jobs"]]
        held: list[pb.Message] = []
        while len(held) < 2:
            held += next(events).jobs
        time.sleep(0.5)  # time enough for anything more to be leased
        assert len(held) == 2 and statuses(http, ids) == {"leased": 2, "pending": 3}

        transport.call(SETTLE, pb.SettleRequest(session_id=session, ack=lock_of(held[0])))
        (third,) = next(events).jobs
        assert third.id in ids and third.id not in {job.id for job in held}
        assert statuses(http, ids) == {"succeeded": 1, "leased": 2, "pending": 2}


def test_a_lease_kept_by_heartbeats_keeps_its_credit(node: NodeProcess, http: httpx.Client) -> None:
    """A job that outlives its first lease deadline, refreshed as a worker's
    heartbeats do, still holds its credit: the node pushes nothing more."""
    queue = make_queue(http, visibility_timeout_ms=1_000)
    transport = GrpcTransport(node.grpc)
    with closing(transport), lease_stream(node, queue, credit=1) as events:
        session = next(events).session_id
        first_id = submit(http, queue, "ok", "long")
        (first,) = next(events).jobs
        assert first.id == first_id
        second = submit(http, queue, "ok", "waits")
        seen = set()
        until = time.monotonic() + 3.5  # past the first deadline and a 2 s re-check
        while time.monotonic() < until:
            transport.call("Refresh", lock_of(first))
            seen.add((job(http, first_id)["status"], job(http, second)["status"]))
            time.sleep(0.2)
        assert seen == {("leased", "pending")}  # the second never took the first's credit

        transport.call(SETTLE, pb.SettleRequest(session_id=session, ack=lock_of(first)))
        (pushed,) = next(events).jobs
        assert pushed.id == second


def test_worker_rpcs_refuse_bad_input(node: NodeProcess, http: httpx.Client) -> None:
    queue = make_queue(http)
    transport = GrpcTransport(node.grpc)
    channel = grpc.insecure_channel(node.grpc)
    try:
        lease = channel.unary_stream(
            "/kokaq.v1.Workers/Lease",
            request_serializer=pb.LeaseRequest.SerializeToString,
            response_deserializer=pb.LeaseEvent.FromString,
        )
        queues = [pb.QueueWeight(queue=queue, weight=1)]
        for request, field in (
            (pb.LeaseRequest(namespace="default", credit=1), "queues"),
            (pb.LeaseRequest(namespace="default", queues=queues, credit=0), "credit"),
            (pb.LeaseRequest(namespace="default", queues=queues, credit=1001), "credit"),
            (
                pb.LeaseRequest(namespace="default", queues=queues, credit=4, concurrency=0),
                "concurrency",
            ),
            (
                pb.LeaseRequest(namespace="default", queues=queues, credit=4, concurrency=5),
                "concurrency",
            ),
            (
                pb.LeaseRequest(namespace="default", queues=queues, credit=1, worker_id="w" * 257),
                "worker_id",
            ),
        ):
            with pytest.raises(grpc.RpcError) as raised:
                next(iter(lease(request, timeout=5)))
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert field in str(raised.value.details())
        # A missing queue is not an error: the stream waits for its first job.
        later = f"w-later-{uuid.uuid4().hex[:8]}"
        missing = pb.LeaseRequest(
            namespace="default", queues=[pb.QueueWeight(queue=later)], credit=1
        )
        stream = iter(lease(missing, timeout=10))
        assert next(stream).session_id
        assert next(stream).waiting == f"queue default/{later} not found"  # once, saying why
        first = submit(http, later, "ok")
        assert [job.id for job in next(stream).jobs] == [first]

        with pytest.raises(InvalidArgument) as bad:
            transport.call(SETTLE_MANY, pb.SettleManyRequest(session_id="s"))
        assert bad.value.field == "items"
        job_id = submit(http, queue, "ok")
        stale = pb.LockRef(namespace="default", queue=queue, message_id=job_id, lock_id="nope")
        settle = pb.SettleRequest(ack=stale)
        unknown = pb.SettleRequest(nack=pb.NackRequest(lock=stale, delay_ms=-5))
        answer = transport.call(SETTLE_MANY, pb.SettleManyRequest(items=[settle, unknown]))
        assert [r.error.type for r in answer.results] == ["LockLost", "InvalidArgument"]
        with pytest.raises(InvalidArgument):
            transport.call(SETTLE, pb.SettleRequest(session_id="s"))  # no outcome
        with pytest.raises(InvalidArgument) as bad:
            transport.call(END_LEASE, pb.EndLeaseRequest())
        assert bad.value.field == "session_id"
        with pytest.raises(NotFound, match="lease session 'nope' not found"):
            transport.call(END_LEASE, pb.EndLeaseRequest(session_id="nope"))
    finally:
        channel.close()
        transport.close()


class WorkStream:
    """A raw ``Workers.Work`` stream: ``send`` puts a request on it, ``close``
    ends the worker's side, ``events`` reads the node's."""

    def __init__(self, node: NodeProcess, first: pb.WorkRequest | bytes) -> None:
        self._channel = grpc.insecure_channel(node.grpc)
        self._outbox: SimpleQueue[bytes | None] = SimpleQueue()
        work = self._channel.stream_stream(
            "/kokaq.v1.Workers/Work",
            request_serializer=None,
            response_deserializer=pb.WorkEvent.FromString,
        )
        self.send(first)
        self.events: Iterator[pb.WorkEvent] = iter(work(self._requests(), timeout=30))

    def _requests(self) -> Iterator[bytes]:
        while (raw := self._outbox.get()) is not None:
            yield raw

    def send(self, request: pb.WorkRequest | bytes) -> None:
        raw = request if isinstance(request, bytes) else request.SerializeToString()
        self._outbox.put(raw)

    def close(self) -> None:
        self._outbox.put(None)

    def until(self, done: Any) -> list[pb.WorkEvent]:
        """Read events until ``done(events so far)`` holds."""
        seen: list[pb.WorkEvent] = []
        while not done(seen):
            seen.append(next(self.events))
        return seen

    def __enter__(self) -> WorkStream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
        self._channel.close()


def work_lease(queue: str, credit: int) -> pb.WorkRequest:
    return pb.WorkRequest(
        lease=pb.LeaseRequest(
            namespace="default", queues=[pb.QueueWeight(queue=queue)], credit=credit
        )
    )


def jobs_in(events: list[pb.WorkEvent]) -> list[pb.Message]:
    return [job for event in events for job in event.jobs]


def answer(events: list[pb.WorkEvent], settle_id: int) -> list[pb.SettleOutcome] | None:
    found = [list(event.settled) for event in events if event.settle_id == settle_id]
    return found[0] if found else None


def test_work_stream_settles_on_the_stream_and_ends_cleanly(
    node: NodeProcess, http: httpx.Client
) -> None:
    """Jobs come as on Lease; settles sent on the stream are answered on it
    (by settle_id) and give the credit back; ``end`` stops the leasing but
    not the answers; closing the worker's side ends the stream with OK."""
    queue = make_queue(http, visibility_timeout_ms=60_000, max_payload_bytes=64)
    with WorkStream(node, work_lease(queue, credit=2)) as stream:
        assert next(stream.events).session_id
        ids = [submit(http, queue, "ok", n) for n in range(3)]
        held = jobs_in(stream.until(lambda seen: len(jobs_in(seen)) == 2))
        time.sleep(0.3)  # time enough for a third, were the credit not full
        assert statuses(http, ids) == {"leased": 2, "pending": 1}

        too_big = pb.SettleRequest(ack=lock_of(held[0]), result=b"x" * 65)
        stream.send(pb.WorkRequest(settle_id=6, settles=[too_big]))
        (refused,) = answer(stream.until(lambda seen: answer(seen, 6) is not None), 6) or []
        assert refused.error.type == "PayloadTooLarge"
        assert json.loads(refused.error.details_json)["field"] == "result"  # the settle's field
        with_result = pb.SettleRequest(ack=lock_of(held[0]), result=b'{"n": 1}')
        stream.send(pb.WorkRequest(settle_id=7, settles=[with_result]))
        seen = stream.until(lambda seen: answer(seen, 7) is not None and jobs_in(seen))
        assert [o.outcome for o in answer(seen, 7) or []] == ["acked"]
        (third,) = jobs_in(seen)  # the credit came back
        assert third.id in ids and third.id not in {job.id for job in held}

        stream.send(pb.WorkRequest(end=True))
        assert stream.until(lambda seen: seen and seen[-1].ended)[-1].jobs == []
        later = submit(http, queue, "ok", "after the end")
        nack = pb.NackRequest(lock=lock_of(held[1]), error="boom", delay_ms=0)
        release = pb.ReleaseRequest(lock=lock_of(third))
        settles = [pb.SettleRequest(nack=nack), pb.SettleRequest(release=release)]
        stream.send(pb.WorkRequest(settle_id=8, settles=settles))
        seen = stream.until(lambda seen: answer(seen, 8) is not None)
        assert [o.outcome for o in answer(seen, 8) or []] == ["requeued", "released"]
        stream.close()
        assert list(stream.events) == []  # ends cleanly (a failure would raise)
    assert statuses(http, [*ids, later]) == {"succeeded": 1, "pending": 3}
    assert job(http, held[1].id)["last_error"] == "boom"
    assert job(http, held[0].id)["result"] == {"n": 1}


def work_calls(http: httpx.Client, code: str) -> float:
    """Work streams the node ended with ``code``, from its metrics."""
    samples = scrape(http)
    return samples.get(
        ("kokaq_grpc_requests_total", frozenset({"method": "Work", "code": code}.items())), 0.0
    )


def test_work_stream_refuses_bad_input(node: NodeProcess, http: httpx.Client) -> None:
    refused_before = work_calls(http, "INVALID_ARGUMENT")
    queue, other = make_queue(http), make_queue(http)
    lease = work_lease(queue, credit=1)
    stale = pb.LockRef(namespace="default", queue=other, lock_id="nope")
    stale.message_id = submit(http, other, "ok")  # pending: not leased with that lock
    ack = pb.SettleRequest(ack=stale)
    with_settles = pb.WorkRequest(lease=lease.lease, settles=[ack])
    no_credit = pb.LeaseRequest(namespace="default", queues=lease.lease.queues)
    bad_credit = pb.WorkRequest(lease=no_credit)
    for first, field in (
        (pb.WorkRequest(settles=[ack]), "lease"),
        (with_settles, "lease"),
        (bad_credit, "credit"),
        (b"\xff\xff", "request"),
    ):
        with WorkStream(node, first) as stream, pytest.raises(grpc.RpcError) as raised:
            next(stream.events)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in str(raised.value.details())
    for later, field in (
        (lease, "lease"),
        (pb.WorkRequest(settles=[ack] * 1001), "settles"),
        (b"\xff\xff", "request"),
    ):
        with WorkStream(node, lease) as stream:
            assert next(stream.events).session_id
            stream.send(later)
            with pytest.raises(grpc.RpcError) as raised:
                list(stream.events)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in str(raised.value.details())
    # A settle that fails alone is answered with its error, and the stream goes on.
    with WorkStream(node, lease) as stream:
        assert next(stream.events).session_id
        release = pb.SettleRequest(release=pb.ReleaseRequest(lock=stale), result=b"1")
        stream.send(pb.WorkRequest(settle_id=1, settles=[ack, pb.SettleRequest(), release]))
        outcomes = answer(stream.until(lambda seen: answer(seen, 1) is not None), 1) or []
        assert [o.error.type for o in outcomes] == [
            "LockLost",
            "InvalidArgument",
            "InvalidArgument",
        ]
        fields = [json.loads(o.error.details_json)["field"] for o in outcomes[1:]]
        assert fields == ["outcome", "result"]  # a result goes with an ack only
        submit(http, queue, "ok")
        assert len(jobs_in(stream.until(jobs_in))) == 1
    # Each refused stream is counted, by its status.
    wait_until(lambda: work_calls(http, "INVALID_ARGUMENT") == refused_before + 7, timeout=5)


def unavailable(why: str) -> grpc.aio.AioRpcError:
    """What a stream's reader raises when its connection is lost."""
    empty = grpc.aio.Metadata()
    return grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, empty, empty, details=why, debug_error_string=why
    )


class BreakingCall:
    """A Work call that breaks (UNAVAILABLE, as a lost connection does) right
    after ``after`` settles are written: their answers never come."""

    def __init__(self, call: Any, after: int) -> None:
        self._call = call
        self._after = after
        self._broken = asyncio.Event()

    async def write(self, request: pb.WorkRequest) -> None:
        await self._call.write(request)
        self._after -= len(request.settles)
        if self._after <= 0:
            self._broken.set()

    async def done_writing(self) -> None:
        await self._call.done_writing()

    async def __aiter__(self) -> AsyncIterator[pb.WorkEvent]:
        events = aiter(self._call)
        broken = asyncio.ensure_future(self._broken.wait())
        try:
            while True:
                event = asyncio.ensure_future(anext(events))
                await asyncio.wait({event, broken}, return_when=asyncio.FIRST_COMPLETED)
                if broken.done():
                    event.cancel()
                    self._call.cancel()
                    raise unavailable("connection lost (test)")
                try:
                    yield event.result()
                except StopAsyncIteration:
                    return
        finally:
            broken.cancel()


class CountingTransport(AsyncGrpcTransport):
    """The worker's transport, counting its SettleMany calls; ``work_path``
    opens the Work stream at another method (one the node does not know),
    and ``break_after`` breaks each Work stream after that many settles."""

    def __init__(self, address: str, work_path: str = "/kokaq.v1.Workers/Work") -> None:
        super().__init__(address)
        self.settle_many_calls = 0
        self.work_path = work_path
        self.break_after: int | None = None

    async def call(self, name: str, request: Any) -> Any:
        if name == SETTLE_MANY:
            self.settle_many_calls += 1
        return await super().call(name, request)

    def work_stream(self) -> Any:
        call = self._channel().stream_stream(
            self.work_path,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb.WorkEvent.FromString,
        )(metadata=self._metadata)
        return call if self.break_after is None else BreakingCall(call, self.break_after)


def run_worker_until(transport: CountingTransport, queue: str, jobs: int) -> Counter[str]:
    """Run an in-process Worker on ``queue`` until it has settled ``jobs``
    jobs; how many times each job ran."""
    ran: Counter[str] = Counter()
    worker = Worker(queues=[queue], concurrency=4, transport=transport)

    @worker.handler("ok")
    def ok(job: Job) -> None:
        ran[job.id] += 1

    async def run() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run_async(stop))
        for _ in range(2000):
            if worker.processed >= jobs or running.done():
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(running, timeout=30)  # a stop that hangs fails the test
        await transport.close()

    asyncio.run(run())
    return ran


def submit_batch(http: httpx.Client, queue: str, count: int) -> list[str]:
    jobs = [{"type": "ok", "payload": n, "queue": queue} for n in range(count)]
    response = http.post("/v1/jobs/batch", json={"jobs": jobs})
    assert response.status_code == 201, response.text
    return [job["id"] for job in response.json()["jobs"]]


def test_the_worker_settles_on_its_work_stream(node: NodeProcess, http: httpx.Client) -> None:
    queue = make_queue(http)
    ids = submit_batch(http, queue, 60)
    streams_before = work_calls(http, "OK")
    transport = CountingTransport(node.grpc)
    ran = run_worker_until(transport, queue, len(ids))
    assert ran == Counter(dict.fromkeys(ids, 1))
    assert statuses(http, ids) == {"succeeded": len(ids)}
    assert transport.settle_many_calls == 0  # every settle went on the stream
    wait_until(lambda: work_calls(http, "OK") == streams_before + 1, timeout=5)  # closed cleanly


def test_the_worker_leases_over_lease_from_a_node_without_work(
    node: NodeProcess, http: httpx.Client
) -> None:
    """A node of an older build answers Work with UNIMPLEMENTED: the worker
    uses Lease, and settles by SettleMany."""
    queue = make_queue(http)
    ids = submit_batch(http, queue, 30)
    transport = CountingTransport(node.grpc, work_path="/kokaq.v1.Workers/NoSuchWork")
    ran = run_worker_until(transport, queue, len(ids))
    assert ran == Counter(dict.fromkeys(ids, 1))
    assert statuses(http, ids) == {"succeeded": len(ids)}
    assert transport.settle_many_calls > 0


def test_settles_a_broken_work_stream_did_not_answer_go_by_settle_many(
    node: NodeProcess, http: httpx.Client
) -> None:
    """Each Work stream breaks right after a settle is written: its answer
    never comes, so the worker sends it again by SettleMany (whether the node
    applied it or not, it answers as the first did), and reconnects. Jobs the
    node pushed in the moment before the break are lost on the way and wait
    out their lease (the node cannot know the worker missed them): a short
    one brings them back within the test's time."""
    queue = make_queue(http, visibility_timeout_ms=2_000)
    ids = submit_batch(http, queue, 20)
    transport = CountingTransport(node.grpc)
    transport.break_after = 1
    ran = run_worker_until(transport, queue, len(ids))
    assert ran == Counter(dict.fromkeys(ids, 1))
    assert statuses(http, ids) == {"succeeded": len(ids)}
    assert transport.settle_many_calls > 0


def test_workers_on_a_cluster_lose_nothing_when_the_leader_is_killed(tmp_path: Path) -> None:
    """Two worker processes on a 3-node cluster while jobs arrive; the leader
    is SIGKILLed mid-stream. The workers reconnect to the new leader, settles
    whose answers died with the old one go again (and answer as they did): every
    job succeeds, none is left behind, and a job runs twice only if its ack
    was lost (at most what the workers held at the kill)."""
    nodes = start_cluster(str(tmp_path / "cluster"))
    addresses = [node.grpc for node in nodes]
    running = Workers(nodes[0], tmp_path, server=",".join(addresses))
    try:
        with Client(addresses) as client:
            client.create_namespace("default")
            client.create_queue("default", "q", QueueConfig(visibility_timeout_ms=5_000))
            for _ in range(2):
                running.start("q", "--concurrency", "4")
            with Producer(client, "default", "q", linger_ms=0) as producer:
                for _ in range(300):
                    producer.send(b"0", headers=OK_JOB)
                wait_until(lambda: len(running.lines()) >= 100, timeout=30)
                old = leader_of(nodes)
                old.kill()
                for _ in range(300):
                    producer.send(b"0", headers=OK_JOB)
            survivors = [node for node in nodes if node is not old]
            assert leader_of(survivors) is not old
            queue = client.queue("default", "q")
            wait_until(lambda: queue.stats().succeeded == 600, timeout=60)
            stats = queue.stats()
        assert (stats.ready, stats.delayed, stats.leased, stats.dead) == (0, 0, 0, 0), stats
        ran = Counter(row[0] for row in running.lines())
        assert len(ran) == 600
        held_at_kill = 2 * 8  # two workers, each a prefetch of twice its concurrency
        assert sum(ran.values()) - len(ran) <= held_at_kill, ran.most_common(5)
        assert all(process.poll() is None for process in running.processes)  # still working
    finally:
        running.stop_all()
        for node in nodes:
            node.kill()


class UpgradingTransport(CountingTransport):
    """A node without Work whose first Lease stream, once it has pushed jobs,
    breaks as the node restarts, upgraded: it has Work from then on."""

    def __init__(self, address: str) -> None:
        super().__init__(address, work_path="/kokaq.v1.Workers/NoSuchWork")
        self.work_streams = 0

    def work_stream(self) -> Any:
        self.work_streams += 1
        return super().work_stream()

    def lease_stream(self, request: pb.LeaseRequest) -> Any:
        call = super().lease_stream(request)

        async def until_upgraded() -> AsyncIterator[pb.LeaseEvent]:
            async for event in call:
                yield event
                if event.jobs:
                    call.cancel()
                    self.work_path = "/kokaq.v1.Workers/Work"
                    raise unavailable("the node restarts (test)")

        return until_upgraded()


def test_a_worker_on_lease_takes_work_once_its_node_has_it(
    node: NodeProcess, http: httpx.Client
) -> None:
    """A rolling upgrade: the worker fell back to Lease on an old node; the
    stream it opens after that node's restart is a Work stream again."""
    queue = make_queue(http)
    first = submit_batch(http, queue, 10)
    transport = UpgradingTransport(node.grpc)
    ran: Counter[str] = Counter()
    worker = Worker(queues=[queue], concurrency=2, transport=transport)

    @worker.handler("ok")
    def ok(job: Job) -> None:
        ran[job.id] += 1

    async def run() -> tuple[int, int]:
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run_async(stop))
        try:
            while worker.processed < len(first) and not running.done():
                await asyncio.sleep(0.01)
            calls_on_lease = transport.settle_many_calls
            second = await asyncio.to_thread(submit_batch, http, queue, 10)
            while worker.processed < len(first) + len(second) and not running.done():
                await asyncio.sleep(0.01)
            first.extend(second)
            return calls_on_lease, transport.settle_many_calls
        finally:
            stop.set()
            await asyncio.wait_for(running, timeout=30)
            await transport.close()

    calls_on_lease, calls_in_all = asyncio.run(asyncio.wait_for(run(), timeout=60))
    assert ran == Counter(dict.fromkeys(first, 1))
    assert statuses(http, first) == {"succeeded": 20}
    assert calls_on_lease > 0 and calls_in_all == calls_on_lease  # then all on the stream
    assert transport.work_streams >= 2  # refused once, then opened


def test_get_workers_shows_the_streams_open_on_the_node(
    http: httpx.Client, workers: Workers
) -> None:
    queue = make_queue(http)
    process = workers.start(f"{queue}:3", "--concurrency", "3", "--worker-id", "mailer-1")

    def mine() -> list[dict[str, Any]]:
        response = http.get("/v1/workers")
        assert response.status_code == 200, response.text
        return [w for w in response.json()["workers"] if w["worker_id"] == "mailer-1"]

    wait_until(lambda: len(mine()) == 1, timeout=20)
    (shown,) = mine()
    assert (shown["stream"], shown["credit"], shown["concurrency"]) == ("Work", 6, 3)
    assert shown["queues"] == [{"queue": queue, "weight": 3}]
    assert (shown["held"], shown["leased"], shown["ending"]) == (0, 0, False)
    assert abs(shown["connected_at_ms"] / 1000 - time.time()) < 60
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0
    wait_until(lambda: mine() == [], timeout=10)  # gone once its stream closed
    # Another namespace's workers are not listed; bad input is refused.
    assert http.get("/v1/workers", params={"namespace": "elsewhere"}).json() == {"workers": []}
    refused = http.get("/v1/workers", params={"namespace": ""})
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "namespace"


def test_a_worker_waits_for_its_queue_to_be_created(http: httpx.Client, workers: Workers) -> None:
    """Workers often start before the first job creates their queue: the
    stream stays open (no reconnecting storm, no Dequeue proposed while the
    queue is missing), and the first job submitted runs."""
    queue = f"w-later-{uuid.uuid4().hex[:8]}"

    def shown() -> list[dict[str, Any]]:
        listed = http.get("/v1/workers").json()["workers"]
        return [w for w in listed if w["worker_id"] == "patient-1"]

    def dequeues() -> float:
        labels = frozenset({"operation": "Dequeue"}.items())
        return scrape(http).get(("kokaq_commit_operations_total", labels), 0.0)

    workers.start(queue, "--worker-id", "patient-1")
    wait_until(lambda: [w["waiting_for_queue"] for w in shown()] == [True], timeout=20)
    proposed = dequeues()
    time.sleep(2.5)  # past the node's 2 s recheck
    assert dequeues() == proposed  # it looks, and proposes nothing
    (still,) = shown()
    assert still["session_id"] and still["waiting_for_queue"]  # the same stream, still open
    assert "reconnecting" not in workers.output(0)
    said = f"patient-1 waits: queue default/{queue} not found (the first job submitted to it"
    assert workers.output(0).count(said) == 1
    job_id = submit(http, queue, "ok")  # creates the queue
    wait_until(lambda: job(http, job_id)["status"] == "succeeded", timeout=10)
    (after,) = shown()
    assert after["session_id"] == still["session_id"] and not after["waiting_for_queue"]
    assert after["leased"] == 1


def test_workers_need_a_consumer_key_of_their_namespace(tmp_path: Path) -> None:
    """On a node with keys, a worker leases and settles with a consumer key;
    with no key, a producer's, or another namespace's, it stops at once with
    the refusal (no retrying a key that cannot work)."""
    keys = "adminkey1:admin,pushkey01:producer,pullkey01:consumer,teampull1:consumer:team"
    node = NodeProcess(str(tmp_path / "node"), "--api-key", keys).start()
    running = Workers(node, tmp_path)
    try:
        with Client(node.grpc, api_key="adminkey1") as client:
            client.create_namespace("default")
            client.create_queue("default", "q")
            job_id = client.queue("default", "q").enqueue(b"0", headers=OK_JOB).message_id
            for args, refusal in (
                ((), "an API key is required"),
                (("--api-key", "pushkey01"), "a producer key may not make this call"),
                (("--api-key", "teampull1"), "this key is limited to namespace 'team'"),
            ):
                refused = running.start("q", *args)
                assert refused.wait(20) != 0
                assert refusal in running.output(len(running.processes) - 1)
            assert running.lines() == []  # none of them ran it
            running.start("q", "--api-key", "pullkey01")
            wait_until(lambda: [row[0] for row in running.lines()] == [job_id], timeout=20)
            queue = client.queue("default", "q")
            wait_until(lambda: queue.stats().succeeded == 1, timeout=10)  # settled on its stream
    finally:
        running.stop_all()
        node.kill()


def test_kokaq_worker_takes_the_queues_and_concurrency_of_its_worker_module(
    http: httpx.Client, node: NodeProcess, tmp_path: Path
) -> None:
    """A module's ``Worker(queues=…, concurrency=…)`` is run as it says when the
    command line gives neither (it used to lease from ``default``)."""
    queue = make_queue(http)
    (tmp_path / "own_settings.py").write_text(
        "from kokaq.client import Worker\n"
        f"worker = Worker(queues={{{queue!r}: 2}}, concurrency=3)\n"
        "worker.handler('ok')(lambda job: {'ran': job.id})\n"
    )
    command = [sys.executable, "-m", "kokaq.repl", "worker", "own_settings:worker",
               "--server", node.grpc, "--worker-id", "own-settings-1"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOKAQ_WORKER_")}
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        job_id = submit(http, queue, "ok")
        wait_until(lambda: job(http, job_id)["status"] == "succeeded", timeout=20)
        assert job(http, job_id)["result"] == {"ran": job_id}
        (shown,) = [w for w in http.get("/v1/workers").json()["workers"]
                    if w["worker_id"] == "own-settings-1"]  # fmt: skip
        assert (shown["queues"], shown["concurrency"]) == ([{"queue": queue, "weight": 2}], 3)
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=20)[0].decode()
    assert process.returncode == 0, output
    assert f"from {queue}:2" in output
