"""The Worker against the in-process transport: what users test their own
handlers with, no server needed."""

from __future__ import annotations

import asyncio

from kokaq.client import Client, Job, Worker
from kokaq.client.testing import AsyncInProcessTransport, InProcessTransport
from kokaq.core import MessageState, QueueConfig
from kokaq.protocol.jobs import job_spec


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
        for _ in range(500):
            if worker.processed == 3:
                break
            await asyncio.sleep(0.01)
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
