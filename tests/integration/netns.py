"""Real network separation for cluster tests: each member in its own Linux
network namespace, all joined by one bridge in the test's namespace (where the
clients run). Cutting a member's link isolates it from its peers and from the
clients, while its process runs on: a partition, not a pause. Needs root and
iproute2 (``ip``); ``available()`` says whether this machine has them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from types import TracebackType


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def available() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"kqprobe{os.getpid() % 100_000}"
    if _ip("netns", "add", probe, check=False).returncode != 0:
        return False
    _ip("netns", "del", probe, check=False)
    return True


class Network:
    """``size`` namespaces on a bridge; member ``i`` has address ``hosts[i]``."""

    def __init__(self, size: int) -> None:
        tag = os.getpid() % 10_000  # interface names have at most 15 characters
        subnet = f"10.213.{tag % 250}"
        self.bridge = f"kqb{tag}"
        self.namespaces = [f"kq{tag}n{i}" for i in range(size)]
        self.links = [f"kq{tag}h{i}" for i in range(size)]  # the bridge's end of each
        self.hosts = [f"{subnet}.{10 + i}" for i in range(size)]
        self.gateway = f"{subnet}.1"
        self.prefixes = [["ip", "netns", "exec", ns] for ns in self.namespaces]

    def __enter__(self) -> Network:
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for ns, link, host in zip(self.namespaces, self.links, self.hosts, strict=True):
                inside = f"{link}x"
                _ip("netns", "add", ns)
                _ip("link", "add", link, "type", "veth", "peer", "name", inside)
                _ip("link", "set", inside, "netns", ns)
                _ip("link", "set", link, "master", self.bridge)
                _ip("link", "set", link, "up")
                _ip("-n", ns, "addr", "add", f"{host}/24", "dev", inside)
                _ip("-n", ns, "link", "set", inside, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def cut(self, member: int) -> None:
        """Take member ``member`` off the network (its process runs on)."""
        _ip("link", "set", self.links[member], "down")

    def heal(self, member: int) -> None:
        _ip("link", "set", self.links[member], "up")

    def run_inside(self, member: int, code: str, timeout: float) -> str:
        """Run Python ``code`` in member ``member``'s namespace: its output."""
        done = subprocess.run(
            [*self.prefixes[member], sys.executable, "-c", code],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        return done.stdout + done.stderr

    def close(self) -> None:
        for ns in self.namespaces:
            _ip("netns", "del", ns, check=False)  # takes its veth pair along
        _ip("link", "del", self.bridge, check=False)
