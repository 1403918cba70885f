"""The Worker against the in-process transport: what users test their own
handlers with, no server needed."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from kokaq.client import Client, Job, Worker
from kokaq.client.testing import AsyncInProcessTransport, InProcessTransport
from kokaq.client.transport import SETTLE_MANY
from kokaq.core import FailureReason, InvalidArgument, MessageState, QueueConfig
from kokaq.protocol.jobs import job_spec


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait for ``condition`` (at most ``seconds``; the test's asserts say the rest)."""
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)


def run_until(worker: Worker, done: Callable[[], bool]) -> None:
    """Run ``worker`` until ``done()`` holds (5 s at most), then stop it."""

    async def run() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run_async(stop))
        await until(done)
        stop.set()
        await running

    asyncio.run(run())


def test_handlers_run_and_jobs_settle_in_process() -> None:
    transport = InProcessTransport()
    client = Client(transport=transport)
    client.create_namespace("default")
    client.create_queue("default", "q", QueueConfig(max_deliveries=1))
    queue = client.queue("default", "q")
    jobs = [  # jobs as the REST API makes them
        job_spec("email", {"to": "a@example.com"}),
        job_spec("explode", {}, max_retries=0),
        job_spec("unknown", {}, max_retries=0),
    ]
    ok, bad, orphan = (r.message_id for r in queue.enqueue_many(jobs))
    seen: list[Job] = []
    worker = Worker(queues=["q"], concurrency=2, transport=AsyncInProcessTransport(sync=transport))

    @worker.handler("email")
    def send(job: Job) -> None:
        seen.append(job)

    @worker.handler("explode")
    async def explode(job: Job) -> None:
        raise RuntimeError("kaboom")

    run_until(worker, lambda: worker.processed == 3)
    assert [(j.id, j.type, j.payload, j.attempts) for j in seen] == [
        (ok, "email", {"to": "a@example.com"}, 1)
    ]
    assert queue.get(ok).state is MessageState.SUCCEEDED
    dead = queue.get(bad)
    assert (dead.state, dead.last_error) == (MessageState.DEAD, "RuntimeError: kaboom")
    assert "no handler for job type 'unknown'" in (queue.get(orphan).last_error or "")
    assert worker.failed == 2


class _HeldSettles(AsyncInProcessTransport):
    """Settles wait at a gate: their answers are on their way until it opens."""

    def __init__(self, sync: InProcessTransport) -> None:
        super().__init__(sync=sync)
        self.gate = asyncio.Event()

    async def call(self, name: str, request: Any) -> Any:
        if name == SETTLE_MANY:
            await self.gate.wait()
        return await super().call(name, request)


def test_a_handler_takes_its_next_job_while_the_last_settle_travels() -> None:
    transport = InProcessTransport()
    client = Client(transport=transport)
    client.create_namespace("default")
    client.create_queue("default", "q")
    queue = client.queue("default", "q")
    ids = [r.message_id for r in queue.enqueue_many([job_spec("work", {}), job_spec("work", {})])]
    started: list[str] = []

    async def run() -> None:
        held = _HeldSettles(transport)
        worker = Worker(queues=["q"], concurrency=1, transport=held)
        assert worker.prefetch == 2

        @worker.handler("work")
        def work(job: Job) -> None:
            started.append(job.id)

        stop = asyncio.Event()
        running = asyncio.create_task(worker.run_async(stop))
        try:
            await until(lambda: len(started) == 2)
            # One handler at a time, yet both ran before the first settle's answer.
            assert sorted(started) == sorted(ids)
            assert worker.processed == 0
        finally:
            held.gate.set()
            await until(lambda: worker.processed == 2)
            stop.set()
            await running

    asyncio.run(run())
    assert all(queue.get(i).state is MessageState.SUCCEEDED for i in ids)


def test_a_job_that_waited_past_its_lease_is_not_run_twice() -> None:
    """One handler, two jobs held: the second waits behind a slow first one
    until its 1 s lease has ended. The node (here the engine) has it back and
    leases it again; the stale copy is skipped, so it runs once."""
    transport = InProcessTransport()
    client = Client(transport=transport)
    client.create_namespace("default")
    client.create_queue("default", "q", QueueConfig(visibility_timeout_ms=1_000))
    queue = client.queue("default", "q")
    jobs = [job_spec("slow", {}), job_spec("quick", {})]
    slow, quick = (r.message_id for r in queue.enqueue_many(jobs))
    runs: list[tuple[str, int]] = []
    worker = Worker(queues=["q"], concurrency=1, transport=AsyncInProcessTransport(sync=transport))

    @worker.handler("slow")
    async def take_time(job: Job) -> None:
        await asyncio.sleep(1.6)

    @worker.handler("quick")
    def record(job: Job) -> None:
        runs.append((job.id, job.attempts))

    async def run() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run_async(stop))
        await until(lambda: worker.processed == 2)
        await asyncio.sleep(0.2)  # a stale copy would run now
        stop.set()
        await running

    asyncio.run(run())
    assert runs == [(quick, 2)]  # once, on its second lease
    assert queue.get(slow).state is MessageState.SUCCEEDED
    assert queue.get(quick).state is MessageState.SUCCEEDED


def _one_queue() -> tuple[InProcessTransport, Any]:
    transport = InProcessTransport()
    client = Client(transport=transport)
    client.create_namespace("default")
    client.create_queue("default", "q")
    return transport, client.queue("default", "q")


def test_an_async_handler_past_its_timeout_is_cancelled_and_its_job_nacked() -> None:
    transport, queue = _one_queue()
    jobs = [job_spec(kind, {}, max_retries=0) for kind in ("hang", "dawdle", "quick")]
    hang, dawdle, quick = (r.message_id for r in queue.enqueue_many(jobs))
    cancelled: list[str] = []
    worker = Worker(
        queues=["q"],
        concurrency=3,
        job_timeout=0.2,
        transport=AsyncInProcessTransport(sync=transport),
    )

    @worker.handler("hang", timeout=0.4)  # its own timeout wins over the worker's
    async def hang_on(job: Job) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(job.id)
            raise

    @worker.handler("dawdle")
    async def dawdle_on(job: Job) -> None:
        await asyncio.sleep(30)

    @worker.handler("quick")
    async def be_quick(job: Job) -> None:
        await asyncio.sleep(0.01)

    run_until(worker, lambda: worker.processed == 3)
    assert cancelled == [hang]
    assert worker.timeout_of("hang") == 0.4 and worker.timeout_of("dawdle") == 0.2
    for job_id, seconds in ((hang, "0.4"), (dawdle, "0.2")):
        timed_out = queue.get(job_id)
        assert (timed_out.state, timed_out.failure_reason) == (
            MessageState.DEAD,
            FailureReason.HANDLER_TIMEOUT,
        )
        assert timed_out.last_error == f"TimeoutError: handler ran past its {seconds} s timeout"
    assert queue.get(quick).state is MessageState.SUCCEEDED
    assert worker.failed == 2


def test_a_plain_function_past_its_timeout_keeps_its_place_until_it_returns() -> None:
    """A thread cannot be stopped: the job is nacked at the timeout, and with
    one handler the next job waits for the thread to come back (not in the
    thread pool's queue, where its own timeout would run out)."""
    transport, queue = _one_queue()
    blocked, quick = (
        r.message_id
        for r in queue.enqueue_many([job_spec("block", {}, max_retries=0), job_spec("quick", {})])
    )
    gate = threading.Event()
    quick_started: list[str] = []
    worker = Worker(
        queues=["q"],
        concurrency=1,
        job_timeout=0.25,
        transport=AsyncInProcessTransport(sync=transport),
    )

    @worker.handler("block", timeout=0.2)
    def block(job: Job) -> str:
        gate.wait(10)
        return "ignored"

    @worker.handler("quick")
    def record(job: Job) -> None:
        quick_started.append(job.id)

    async def run() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run_async(stop))
        try:
            await until(lambda: queue.get(blocked).state is MessageState.DEAD)
            assert queue.get(blocked).state is MessageState.DEAD
            await asyncio.sleep(0.3)  # the one place is still taken
            assert quick_started == []
            assert queue.get(blocked).failure_reason is FailureReason.HANDLER_TIMEOUT
        finally:
            gate.set()
        await until(lambda: worker.processed == 2)
        stop.set()
        await running

    asyncio.run(run())
    assert quick_started == [quick]
    done = queue.get(quick)
    assert (done.state, done.deliveries, done.failure_reason) == (MessageState.SUCCEEDED, 1, None)
    assert queue.get(blocked).state is MessageState.DEAD  # its late return changed nothing


def test_a_handler_raising_timeout_error_itself_is_a_processing_error() -> None:
    transport, queue = _one_queue()
    (job_id,) = (r.message_id for r in queue.enqueue_many([job_spec("raise", {})]))
    worker = Worker(queues=["q"], job_timeout=5, transport=AsyncInProcessTransport(sync=transport))

    @worker.handler("raise")
    async def give_up(job: Job) -> None:
        raise TimeoutError("upstream took too long")

    run_until(worker, lambda: worker.processed == 1)
    failed = queue.get(job_id)
    assert failed.failure_reason is FailureReason.PROCESSING_ERROR
    assert failed.last_error == "TimeoutError: upstream took too long"


@pytest.mark.parametrize("seconds", [0, -1, 7 * 24 * 3600 + 1, float("nan")])
def test_timeouts_out_of_range_are_refused_naming_the_field(seconds: float) -> None:
    with pytest.raises(InvalidArgument) as refused:
        Worker(job_timeout=seconds)
    assert refused.value.field == "job_timeout"
    worker = Worker()
    with pytest.raises(InvalidArgument) as refused:
        worker.handler("t", timeout=seconds)
    assert refused.value.field == "timeout"
    assert worker.job_types == []  # nothing registered


def test_what_a_handler_returns_is_kept_as_the_job_result() -> None:
    transport = InProcessTransport()
    client = Client(transport=transport)
    client.create_namespace("default")
    client.create_queue("default", "q", QueueConfig(max_payload_bytes=64))
    queue = client.queue("default", "q")
    kinds = ("json", "raw", "nothing", "unjson", "huge")
    ids = dict(
        zip(
            kinds,
            (
                r.message_id
                for r in queue.enqueue_many([job_spec(k, {}, max_retries=0) for k in kinds])
            ),
            strict=True,
        )
    )
    worker = Worker(queues=["q"], concurrency=2, transport=AsyncInProcessTransport(sync=transport))
    worker.handler("json")(lambda job: {"sent": 3, "to": ["a"]})
    worker.handler("raw")(lambda job: b"\x00\xff")
    worker.handler("nothing")(lambda job: None)

    @worker.handler("unjson")
    async def unjson(job: Job) -> object:
        return {1, 2}

    worker.handler("huge")(lambda job: "x" * 100)  # 102 bytes of JSON: the queue takes 64

    run_until(worker, lambda: worker.processed == len(kinds))
    views = {kind: queue.get(job_id) for kind, job_id in ids.items()}
    assert views["json"].result == b'{"sent":3,"to":["a"]}'
    assert views["raw"].result == b"\x00\xff"
    assert views["nothing"].state is MessageState.SUCCEEDED and views["nothing"].result is None
    assert views["unjson"].state is MessageState.DEAD and views["unjson"].result is None
    assert (views["unjson"].last_error or "").startswith(
        "TypeError: the handler's result is not JSON: Object of type set"
    )
    # The node refused the result and kept the lease: the worker nacks, saying why.
    huge = views["huge"]
    assert (huge.state, huge.result) == (MessageState.DEAD, None)
    assert huge.last_error == "result refused: result: result is 102 bytes, the limit is 64"
    assert worker.failed == 2


def test_an_sdk_ack_carries_a_result() -> None:
    transport = InProcessTransport()
    client = Client(transport=transport)
    client.create_namespace("default")
    client.create_queue("default", "q", QueueConfig(max_payload_bytes=8))
    queue = client.queue("default", "q")
    queue.enqueue(b"a")
    queue.enqueue(b"b")
    first, second = queue.dequeue(max_count=2)
    first.ack(result=b"done")
    assert queue.get(first.message.id).result == b"done"
    with pytest.raises(InvalidArgument) as refused:
        second.ack(result="text")  # type: ignore[arg-type]
    assert refused.value.field == "result"
    with pytest.raises(InvalidArgument) as refused:
        second.ack(result=b"123456789")
    assert (refused.value.field, type(refused.value).__name__) == ("result", "PayloadTooLarge")
    assert queue.get(second.message.id).state is MessageState.LEASED  # nothing changed
    second.ack()
    assert queue.get(second.message.id).result is None


def test_a_worker_waits_for_its_queue_in_process_too(caplog: pytest.LogCaptureFixture) -> None:
    transport = InProcessTransport()
    client = Client(transport=transport)
    worker = Worker(queues=["later"], transport=AsyncInProcessTransport(sync=transport))
    ran: list[str] = []
    worker.handler("t")(lambda job: ran.append(job.id))

    async def run() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run_async(stop))
        await asyncio.sleep(0.2)  # no namespace, no queue: it waits
        assert not running.done()
        client.create_namespace("default")
        client.create_queue("default", "later")
        ids.append(client.queue("default", "later").enqueue_many([job_spec("t", {})])[0].message_id)
        await until(lambda: worker.processed == 1)
        stop.set()
        await running

    ids: list[str] = []
    asyncio.run(run())
    assert ran == ids
    assert "reconnecting" not in caplog.text  # the stream waited; it did not fail
    assert caplog.text.count("waits: namespace 'default' not found") == 1


def test_a_handler_reports_progress_the_node_keeps() -> None:
    transport, queue = _one_queue()
    (job_id,) = (r.message_id for r in queue.enqueue_many([job_spec("steps", {}, max_retries=0)]))
    reached = threading.Event()
    finish = threading.Event()
    refused: list[str] = []
    worker = Worker(queues=["q"], transport=AsyncInProcessTransport(sync=transport))

    @worker.handler("steps")
    def steps(job: Job) -> None:
        for step in range(1, 101):  # often: only the latest goes to the node
            job.progress({"step": step, "of": 100})
        try:
            job.progress({1, 2})
        except InvalidArgument as error:
            refused.append(error.field)
        reached.set()
        finish.wait(10)
        job.progress("done")  # just before returning: it still reaches the node

    async def run() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run_async(stop))
        try:
            await until(reached.is_set)
            await until(lambda: queue.get(job_id).progress is not None)
            running_now = queue.get(job_id)
            assert running_now.state is MessageState.LEASED
            assert running_now.progress == '{"step":100,"of":100}'
        finally:
            finish.set()
        await until(lambda: worker.processed == 1)
        stop.set()
        await running

    asyncio.run(run())
    assert refused == ["progress"]
    done = queue.get(job_id)
    assert (done.state, done.progress) == (MessageState.SUCCEEDED, '"done"')


def test_an_sdk_lease_reports_progress() -> None:
    _, queue = _one_queue()
    queue.enqueue(b"a")
    (leased,) = queue.dequeue()
    deadline = leased.report_progress([1, "two"])
    assert deadline >= (leased.message.lock_deadline or 0)
    assert queue.get(leased.message.id).progress == '[1,"two"]'
    with pytest.raises(InvalidArgument) as refused:
        leased.report_progress("x" * 5000)
    assert refused.value.field == "progress"


def test_a_plain_function_that_checks_cancelled_frees_its_place_at_the_timeout() -> None:
    transport, queue = _one_queue()
    jobs = [job_spec("loop", {}, max_retries=0), job_spec("quick", {})]
    looping, quick = (r.message_id for r in queue.enqueue_many(jobs))
    stopped: list[str] = []
    ran: list[str] = []
    worker = Worker(queues=["q"], concurrency=1, transport=AsyncInProcessTransport(sync=transport))

    @worker.handler("loop", timeout=0.2)
    def loop(job: Job) -> None:
        while not job.cancelled:  # without it, this would hold the one place for good
            time.sleep(0.01)
        stopped.append(job.id)

    worker.handler("quick")(lambda job: ran.append(job.id))
    run_until(worker, lambda: worker.processed == 2)
    assert (stopped, ran) == ([looping], [quick])
    assert queue.get(looping).failure_reason is FailureReason.HANDLER_TIMEOUT
    assert queue.get(quick).state is MessageState.SUCCEEDED


def test_a_worker_stopping_past_its_grace_cancels_what_still_runs() -> None:
    transport, queue = _one_queue()
    (job_id,) = (r.message_id for r in queue.enqueue_many([job_spec("loop", {})]))
    started = threading.Event()
    saw: list[bool] = []
    worker = Worker(queues=["q"], grace=0.2, transport=AsyncInProcessTransport(sync=transport))

    @worker.handler("loop")
    def loop(job: Job) -> None:
        started.set()
        for _ in range(1000):
            if job.cancelled:
                break
            time.sleep(0.01)
        saw.append(job.cancelled)

    async def run() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run_async(stop))
        await until(started.is_set)
        stop.set()
        await running
        await until(lambda: bool(saw))

    asyncio.run(run())
    assert saw == [True]  # told, well before its 10 s loop ran out
    released = queue.get(job_id)
    assert (released.state, released.deliveries) == (MessageState.READY, 0)  # given back
