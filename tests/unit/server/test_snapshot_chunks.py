"""PySyncObj defect 6 (found by the cluster history checker): a snapshot
chunk from the leader made a follower commit, and apply, entries of its own
log that the leader had never checked."""

from __future__ import annotations

import queue
import socket
from pathlib import Path
from typing import Any

from pysyncobj.node import TCPNode

from kokaq.server.replication import ReplicatedEngine


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def in_raft_thread(node: ReplicatedEngine, call: Any) -> Any:
    answer: queue.SimpleQueue[Any] = queue.SimpleQueue()
    node._in_raft_thread.put(lambda: answer.put(call()))
    node._submitted += 1  # wake the tick loop
    return answer.get(timeout=10)


def test_a_snapshot_chunk_does_not_commit_the_follower_s_own_entries(tmp_path: Path) -> None:
    leader = free_address()  # never started: this node stays a follower
    node = ReplicatedEngine(free_address(), [leader], str(tmp_path), password="secret-1")
    try:

        def receive_chunk() -> tuple[int, int, Any]:
            last = node.journal[-1][1]
            for index in range(last + 1, last + 4):  # a deposed leader's unchecked tail
                node.journal.add(b"never committed", index, 1)
            before = node._SyncObj__raftCommitIndex
            chunk = {"type": "append_entries", "term": 2, "commit_index": last + 100,
                     "serialized": None}  # fmt: skip
            node._SyncObj__onMessageReceived(TCPNode(leader), chunk)
            return before, node._SyncObj__raftCommitIndex, node._SyncObj__leaderCommitIndex

        before, after, leader_commit = in_raft_thread(node, receive_chunk)
        assert after == before  # nothing of the tail committed
        assert leader_commit == node.journal[-1][1] - 3 + 100  # the lag stays visible
    finally:
        node.destroy_synchronous()
