"""Snapshots (Raft log compaction) written by a forked child, so the node keeps serving.

PySyncObj runs a custom dump writer in the Raft thread, and serializing an
engine stops every write meanwhile: 180 ms for 100,000 messages, seconds for
millions, at every compaction. kokaq forks instead, as Redis does for BGSAVE:
the child holds a copy-on-write image of the engine at the snapshot point,
writes it to a file of its own, syncs it and exits, while the Raft thread goes
on committing. When the child has succeeded, the *parent* moves its file onto
the dump, and only then does PySyncObj cut the journal.

A child never installs anything. PySyncObj's own forked writer could outlive
a killed node and replace the dump behind a restarted one (defect 2); here an
orphan leaves a stray ``<dump>.<token>.part`` file at most, which the next
start or install removes. The child closes every inherited descriptor first,
so it holds no listening socket of the node's.
"""

from __future__ import annotations

import contextlib
import gc
import glob
import os
import secrets
import signal
import time
from collections.abc import Callable
from typing import Any

from pysyncobj import SERIALIZER_STATE

from kokaq.server.journal import fsync_directory

__all__ = ["BackgroundDumps"]


class BackgroundDumps:
    """PySyncObj's ``serializer`` (``start``) and ``serializeChecker`` (``status``)."""

    def __init__(
        self, dump_path: str, render: Callable[[Any], bytes], timeout: float = 600.0
    ) -> None:
        """``render(point)`` returns the dump's bytes; it runs in the child, so
        it must take no lock another thread could have held at the fork. A
        writer still at work after ``timeout`` seconds is stuck: it is killed
        and the dump FAILED (PySyncObj tries again), rather than compaction
        stopping for good while the journal grows."""
        self._dump_path = dump_path
        self._render = render
        self._timeout = timeout
        self._started = 0.0
        self._child: tuple[int, str] | None = None  # (pid, its file)
        self._fork_failed = False
        self.remove_strays()

    def start(self, pysyncobj_path: str, point: Any) -> None:
        """Fork the writer of the dump at ``point`` and return at once.

        PySyncObj renames ``pysyncobj_path`` onto the dump as soon as this
        returns. That file must not exist, so the rename fails (PySyncObj
        catches it) and the dump is left to ``status``."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pysyncobj_path)
        part = f"{self._dump_path}.{secrets.token_hex(6)}.part"
        try:
            pid = os.fork()
        except OSError:  # no memory or processes left: say FAILED, PySyncObj retries later
            self._fork_failed = True
            return
        if pid == 0:
            self._write_and_exit(part, point)
        self._child = (pid, part)
        self._started = time.monotonic()

    def _write_and_exit(self, part: str, point: Any) -> None:
        """In the child. Whatever happens, it ends here: it must never return
        into the node's code."""
        code = 1
        try:
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))
            gc.disable()  # a collection would only copy pages shared with the node
            data = self._render(point)
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            code = 0
        finally:
            os._exit(code)

    def status(self) -> int:
        """Where the dump stands; on the child's success, install its file."""
        if self._fork_failed:
            self._fork_failed = False
            return int(SERIALIZER_STATE.FAILED)
        if self._child is None:
            return int(SERIALIZER_STATE.NOT_SERIALIZING)
        pid, part = self._child
        done, code = os.waitpid(pid, os.WNOHANG)
        if not done:
            if time.monotonic() - self._started < self._timeout:
                return int(SERIALIZER_STATE.SERIALIZING)
            self.stop()
            return int(SERIALIZER_STATE.FAILED)
        self._child = None
        if code != 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)
            return int(SERIALIZER_STATE.FAILED)
        os.replace(part, self._dump_path)
        fsync_directory(os.path.dirname(os.path.abspath(self._dump_path)))
        self.remove_strays()
        return int(SERIALIZER_STATE.SUCCESS)

    def remove_strays(self) -> None:
        """Delete the files of writers that are not the current one (orphans of
        a killed node, or failed ones)."""
        mine = self._child[1] if self._child else None
        for path in glob.glob(f"{glob.escape(self._dump_path)}.*.part"):
            if path != mine:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def stop(self) -> None:
        """Shutting down: end a writer still running; its dump is not needed."""
        if self._child is None:
            return
        pid, part = self._child
        self._child = None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part)
