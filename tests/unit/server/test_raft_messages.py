"""PySyncObj defects 6 and 7, driven through the message handler of a real
replica. 6 (found by the cluster history checker): a snapshot
chunk from the leader made a follower commit, and apply, entries of its own
log that the leader had never checked."""

from __future__ import annotations

import queue
import socket
from pathlib import Path
from typing import Any

from pysyncobj.node import TCPNode

from kokaq.server.replication import ReplicatedEngine
from tests.integration.nodes import wait_until


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def in_raft_thread(node: ReplicatedEngine, call: Any) -> Any:
    """``call()`` run in the replica's Raft thread, as its messages are."""
    answer: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()

    def run() -> None:
        try:
            answer.put((True, call()))
        except BaseException as error:  # raised again in the test's thread
            answer.put((False, error))

    node._in_raft_thread.put(run)
    node._submitted += 1  # wake the tick loop
    ok, value = answer.get(timeout=10)
    if not ok:
        raise value
    return value


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


def test_a_refusal_only_moves_a_follower_s_next_index_back(tmp_path: Path) -> None:
    """PySyncObj defect 7 (found by the network-partition test): the leader
    took stale refusals that raised a follower's next index over a conflict it
    had just found, and the follower never caught up."""
    node = ReplicatedEngine(free_address(), [], str(tmp_path), password="secret-1")
    follower = TCPNode(free_address())
    try:

        def refusals() -> list[int]:
            assert node.is_leader()  # a single node leads at once
            next_index = node._SyncObj__raftNextIndex
            next_index[follower] = 10
            node._SyncObj__raftMatchIndex[follower] = 0
            seen = []
            for answer in (12, 9, 12, 7):  # "no entry at 11", "conflict at 9", ...
                refusal = {"type": "next_node_idx", "next_node_idx": answer,
                           "reset": True, "success": False}  # fmt: skip
                node._SyncObj__onMessageReceived(follower, refusal)
                seen.append(next_index[follower])
            success = {"type": "next_node_idx", "next_node_idx": 15,
                       "reset": False, "success": True}  # fmt: skip
            node._SyncObj__onMessageReceived(follower, success)
            seen.append(next_index[follower])
            return seen

        wait_until(node.is_leader, timeout=10)
        assert in_raft_thread(node, refusals) == [10, 9, 9, 7, 15]
    finally:
        node.destroy_synchronous()
