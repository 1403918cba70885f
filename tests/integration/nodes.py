"""Real node processes for integration tests: port 0 everywhere, the ready
line parsed for the addresses the node actually listens on."""

from __future__ import annotations

import os
import pickle
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

_READY = re.compile(r"kokaq node ready: grpc=(\S+) raft=(\S+) http=(\S+)")


class NodeProcess:
    #: Every node started by this test run, so that none outlives it (a test
    #: that fails half-way may not reach its own kill).
    started: ClassVar[list[NodeProcess]] = []

    def __init__(
        self,
        data_dir: str,
        *args: str,
        env: dict[str, str] | None = None,
        raft_listen: str = "127.0.0.1:0",
        prefix: Sequence[str] = (),
    ) -> None:
        """``prefix`` runs the node through a command (``ip netns exec NS``); it
        then listens on the host of ``raft_listen``."""
        self.data_dir = data_dir
        self.args = args
        self.raft_listen = raft_listen
        self.prefix = list(prefix)
        self.env = env
        self.output: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self.grpc = ""
        self.raft = ""
        self.http = ""  # host:port of the REST API, metrics and dashboard

    def start(self, timeout: float = 20.0) -> NodeProcess:
        host = self.raft_listen.rsplit(":", 1)[0]
        command = [
            *self.prefix, sys.executable, "-m", "kokaq.server",
            "--data-dir", self.data_dir,
            "--grpc-listen", f"{host}:0",
            "--http-listen", f"{host}:0",
            "--raft-listen", self.raft_listen,
            *self.args,
        ]  # fmt: skip
        self.output = []
        env = {**os.environ, **(self.env or {})}
        if self.env is None:
            env.pop("KOKAQ_API_KEYS", None)  # an open node unless a test asks otherwise
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        NodeProcess.started.append(self)
        ready = threading.Event()
        threading.Thread(target=self._read, args=(self.process, ready), daemon=True).start()
        if not ready.wait(timeout):
            self.kill()
            raise RuntimeError("node did not become ready:\n" + "".join(self.output))
        return self

    def _read(self, process: subprocess.Popen[str], ready: threading.Event) -> None:
        assert process.stdout is not None
        with process.stdout:
            for line in process.stdout:
                self.output.append(line)
                match = _READY.search(line)
                if match:
                    self.grpc, self.raft, self.http = match.groups()
                    ready.set()

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout)

    @property
    def text(self) -> str:
        return "".join(self.output)

    def children(self) -> list[int]:
        """The processes this node forked (PySyncObj's compaction writer would be one)."""
        assert self.process is not None
        tasks = Path(f"/proc/{self.process.pid}/task").glob("*/children")
        return [int(pid) for path in tasks for pid in path.read_text().split()]


def wait_until(predicate: object, timeout: float = 10.0, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(step)
    raise AssertionError("condition not reached in time")


def start_node(data_dir: str, args: Sequence[str] = ()) -> NodeProcess:
    return NodeProcess(data_dir, *args).start()


def free_ports(count: int) -> list[int]:
    """Ports the OS calls free now (held together, so all different). Raft
    members must know each other's ports before they start."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def start_cluster(
    base_dir: str,
    size: int = 3,
    secret: str = "cluster-secret-1",
    args: Sequence[str] = (),
    hosts: Sequence[str] = (),
    prefixes: Sequence[Sequence[str]] = (),
    member_args: Sequence[Sequence[str]] = (),
) -> list[NodeProcess]:
    """``size`` members started together (none is ready alone), on 127.0.0.1
    unless ``hosts`` names one per member (run through ``prefixes``); each
    with ``args``, then its own ``member_args``."""
    hosts = hosts or ["127.0.0.1"] * size
    prefixes = prefixes or [()] * size
    member_args = member_args or [()] * size
    raft = [f"{host}:{port}" for host, port in zip(hosts, free_ports(size), strict=True)]
    nodes = [
        NodeProcess(
            os.path.join(base_dir, f"node{i}"),
            "--peers",
            ",".join(a for a in raft if a != raft[i]),
            "--cluster-secret",
            secret,
            *args,
            *member_args[i],
            raft_listen=raft[i],
            prefix=prefixes[i],
        )
        for i in range(size)
    ]
    return start_together(nodes)


def start_together(nodes: list[NodeProcess]) -> list[NodeProcess]:
    """Start (or restart) members at once; kill them all if one fails."""
    errors: list[BaseException] = []

    def start(node: NodeProcess) -> None:
        try:
            node.start()
        except BaseException as error:  # reported below, after every start ended
            errors.append(error)

    threads = [threading.Thread(target=start, args=(n,)) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        for node in nodes:
            node.kill()
        raise errors[0]
    return nodes


def leader_of(nodes: list[NodeProcess], timeout: float = 30.0) -> NodeProcess:
    """The one live member whose status says it leads, once the live ones agree."""
    from kokaq.client import Client, RetryPolicy  # noqa: PLC0415 (keep this module light)
    from kokaq.core import KokaqError  # noqa: PLC0415

    found: list[NodeProcess] = []

    def agreed() -> bool:
        found.clear()
        for node in nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            try:
                with Client(node.grpc, retry=RetryPolicy(timeout=0)) as client:
                    status = client.cluster_status()
            except KokaqError:
                return False
            if status.role == "leader":
                found.append(node)
        return len(found) == 1

    wait_until(agreed, timeout=timeout)
    return found[0]


class Producers:
    """Threads enqueueing batches to n/q until stopped, recording every id the
    cluster acknowledged. A thread stops at its first error: the outcome of
    that call is unknown (the node died under it)."""

    def __init__(self, addresses: Sequence[str], acknowledged: list[str], *, threads: int,
                 batch: int, retry_timeout: float) -> None:  # fmt: skip
        from kokaq.client import Client, RetryPolicy  # noqa: PLC0415 (keep this module light)
        from kokaq.core import KokaqError  # noqa: PLC0415

        self.stopping = threading.Event()

        def produce() -> None:
            with Client(list(addresses), retry=RetryPolicy(timeout=retry_timeout)) as client:
                q = client.queue("n", "q")
                while not self.stopping.is_set():
                    try:
                        results = q.enqueue_many([b"m"] * batch)
                    except KokaqError:
                        return
                    acknowledged.extend(r.message_id for r in results)

        self.threads = [threading.Thread(target=produce) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(30)


def send_pickle(raft_address: str, marker: Path) -> None:
    """Send a Raft port what PySyncObj 0.3.17 would unpickle from anyone (its
    message framing): a pickle that creates ``marker`` when loaded."""

    class Payload:
        def __reduce__(self) -> tuple[object, ...]:
            return (open, (str(marker), "w"))

    data = zlib.compress(pickle.dumps(Payload(), 2), 3)
    host, port = raft_address.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as s:
        s.sendall(struct.pack("i", len(data)) + data)
        time.sleep(1.0)
