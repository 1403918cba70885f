"""``kokaq worker`` processes for the integration tests, with handlers that
log what they ran to a file the tests read."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.integration.nodes import NodeProcess

__all__ = ["HANDLERS", "Workers"]

HANDLERS = """
import os, time
from kokaq.client import Worker

worker = Worker()
LOG = os.environ["JOB_LOG"]


def record(*fields):
    with open(LOG, "a") as log:
        log.write(" ".join(str(f) for f in fields) + "\\n")


@worker.handler("ok")
def ok(job):
    record("ran", job.id, job.queue, job.attempts, time.time())


@worker.handler("fail")
def fail(job):
    record("ran", job.id, job.queue, job.attempts, time.time())
    raise ValueError("boom")


@worker.handler("slow")
async def slow(job):
    import asyncio
    record("start", job.id, job.queue, job.attempts, time.time())
    await asyncio.sleep(job.payload["seconds"])
    record("end", job.id, job.queue, job.attempts, time.time())


@worker.handler("steps")
def steps(job):
    count = job.payload["steps"]
    for step in range(1, count + 1):
        job.progress({"step": step, "of": count})
        time.sleep(job.payload["seconds"])


@worker.handler("answer")
def answer(job):
    return {"echo": job.payload, "attempt": job.attempts}


@worker.handler("hang", timeout=0.5)
def hang(job):
    record("start", job.id, job.queue, job.attempts, time.time())
    time.sleep(job.payload["seconds"])
    record("end", job.id, job.queue, job.attempts, time.time())
"""


class Workers:
    """``kokaq worker`` processes and the log their handlers write."""

    def __init__(self, node: NodeProcess, directory: Path, server: str | None = None) -> None:
        self.node = node
        self.server = server or node.grpc  # a cluster's addresses, comma-separated
        self.directory = directory
        (directory / "job_handlers.py").write_text(textwrap.dedent(HANDLERS))
        self.log = directory / "jobs.log"
        self.log.touch()
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, queues: str, *args: str) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "kokaq.repl", "worker", "job_handlers:worker",
                   "--server", self.server, "--queues", queues, *args]  # fmt: skip
        env = {**os.environ, "JOB_LOG": str(self.log)}
        output = self.directory / f"worker{len(self.processes)}.out"
        with output.open("w") as sink:
            process = subprocess.Popen(
                command, cwd=self.directory, env=env, stdout=sink, stderr=subprocess.STDOUT
            )
        self.processes.append(process)
        return process

    def output(self, index: int) -> str:
        return (self.directory / f"worker{index}.out").read_text()

    def lines(self, kind: str = "ran") -> list[list[str]]:
        rows = [line.split() for line in self.log.read_text().splitlines()]
        return [row[1:] for row in rows if row and row[0] == kind]

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(10)
