"""Snapshots written by a forked child that never installs them itself."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest
from pysyncobj import SERIALIZER_STATE

from kokaq.server.dumps import BackgroundDumps


def finish(dumps: BackgroundDumps, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while (state := dumps.status()) == SERIALIZER_STATE.SERIALIZING:
        assert time.monotonic() < deadline, "the writer never finished"
        time.sleep(0.005)
    return state


def test_the_node_installs_what_its_child_wrote(tmp_path: Path) -> None:
    dump = tmp_path / "raft.dump"
    dump.write_bytes(b"old")
    dumps = BackgroundDumps(str(dump), lambda point: f"state at {point}".encode())
    assert dumps.status() == SERIALIZER_STATE.NOT_SERIALIZING
    pysyncobj_tmp = tmp_path / "raft.dump.tmp"
    pysyncobj_tmp.write_bytes(b"stale")  # PySyncObj would rename it onto the dump
    dumps.start(str(pysyncobj_tmp), 42)
    assert not pysyncobj_tmp.exists()
    assert dump.read_bytes() == b"old"  # nothing installed before the child is done
    assert finish(dumps) == SERIALIZER_STATE.SUCCESS
    assert dump.read_bytes() == b"state at 42"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raft.dump"]
    assert dumps.status() == SERIALIZER_STATE.NOT_SERIALIZING


def test_a_failed_writer_leaves_the_dump_alone(tmp_path: Path) -> None:
    def broken(point: object) -> bytes:
        raise RuntimeError("no")

    dump = tmp_path / "raft.dump"
    dump.write_bytes(b"old")
    dumps = BackgroundDumps(str(dump), broken)
    dumps.start(str(tmp_path / "raft.dump.tmp"), 1)
    assert finish(dumps) == SERIALIZER_STATE.FAILED
    assert dump.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raft.dump"]


def test_a_failed_fork_is_reported_once_so_pysyncobj_tries_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PySyncObj starts no new dump until one SUCCEEDED or FAILED."""

    def no_fork() -> int:
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    dumps = BackgroundDumps(str(tmp_path / "raft.dump"), lambda point: b"")
    monkeypatch.setattr(os, "fork", no_fork)
    dumps.start(str(tmp_path / "raft.dump.tmp"), 1)
    assert dumps.status() == SERIALIZER_STATE.FAILED
    assert dumps.status() == SERIALIZER_STATE.NOT_SERIALIZING
    assert list(tmp_path.iterdir()) == []


def test_a_stuck_writer_is_killed_and_the_dump_failed(tmp_path: Path) -> None:
    def stuck(point: object) -> bytes:
        time.sleep(30)
        return b"never"

    dumps = BackgroundDumps(str(tmp_path / "raft.dump"), stuck, timeout=0.2)
    dumps.start(str(tmp_path / "raft.dump.tmp"), 1)
    assert dumps.status() == SERIALIZER_STATE.SERIALIZING
    assert finish(dumps) == SERIALIZER_STATE.FAILED
    assert list(tmp_path.iterdir()) == []


def test_an_orphan_s_file_is_removed_and_never_installed(tmp_path: Path) -> None:
    dump = tmp_path / "raft.dump"
    stray = tmp_path / "raft.dump.0123456789ab.part"
    stray.write_bytes(b"from a writer whose node was killed")
    BackgroundDumps(str(dump), lambda point: b"")
    assert not stray.exists() and not dump.exists()


def test_stop_ends_a_running_writer(tmp_path: Path) -> None:
    def slow(point: object) -> bytes:
        time.sleep(30)
        return b"late"

    dump = tmp_path / "raft.dump"
    dumps = BackgroundDumps(str(dump), slow)
    dumps.start(str(tmp_path / "raft.dump.tmp"), 1)
    assert dumps._child is not None
    pid = dumps._child[0]
    started = time.monotonic()
    dumps.stop()
    assert time.monotonic() - started < 5
    assert not os.path.exists(f"/proc/{pid}")  # killed and reaped
    assert list(tmp_path.iterdir()) == []
    assert dumps.status() == SERIALIZER_STATE.NOT_SERIALIZING
