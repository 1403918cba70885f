"""The Worker against the in-process transport: what users test their own
handlers with, no server needed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from kokaq.client import Client, Job, Worker
from kokaq.client.testing import AsyncInProcessTransport, InProcessTransport
from kokaq.client.transport import SETTLE_MANY
from kokaq.core import MessageState, QueueConfig
from kokaq.protocol.jobs import job_spec


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait for ``condition`` (at most ``seconds``; the test's asserts say the rest)."""
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)


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

    async def run_until_settled() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run_async(stop))
        await until(lambda: worker.processed == 3)
        stop.set()
        await running

    asyncio.run(run_until_settled())
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
