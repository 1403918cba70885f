"""kokaq's Raft journal: durable before relied on, no truncation without a
conflict, alignment to a dump, torn tails cut off."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pysyncobj.transport import TCPTransport

from kokaq.server.journal import DurableJournal
from kokaq.server.replication import DurableTransport


def entries(n: int, term: int = 1, start: int = 1) -> list[tuple[bytes, int, int]]:
    return [(f"cmd{i}".encode(), i, term) for i in range(start, start + n)]


def filled(tmp_path: Path, n: int) -> tuple[str, DurableJournal]:
    """A journal's path, and the journal holding ``entries(n)``."""
    path = str(tmp_path / "j")
    journal = DurableJournal(path)
    for entry in entries(n):
        journal.add(*entry)
    return path, journal


def test_entries_survive_a_reopen(tmp_path: Path) -> None:
    path, journal = filled(tmp_path, 5)
    journal.sync()
    # No close: a SIGKILLed process never gets to flush anything.
    reopened = DurableJournal(path)
    assert list(reopened[:]) == entries(5)


def test_entries_written_together_share_one_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real = os.fdatasync

    def counted(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counted)
    journal = DurableJournal(str(tmp_path / "j"))
    for entry in entries(5):
        journal.add(*entry)
    assert journal.appends == 5 and journal.unsynced and synced == []
    journal.sync()
    journal.sync()  # nothing new: no second fdatasync
    assert len(synced) == 1 and journal.syncs == 1 and not journal.unsynced


def test_the_commit_index_never_covers_an_entry_not_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PySyncObj applies (and kokaq answers) up to the commit index it stores
    here: the entries must be on disk by then."""
    journal = DurableJournal(str(tmp_path / "j"))
    for entry in entries(3):
        journal.add(*entry)
    seen: list[bool] = []
    monkeypatch.setattr(journal, "_store_meta", lambda: seen.append(journal.unsynced))
    journal.setRaftCommitIndex(3)
    journal.onOneSecondTimer()  # stores the commit index
    assert not journal.unsynced and seen == [False]


def test_a_follower_says_it_holds_entries_only_once_they_are_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The leader counts a successful next_node_idx towards a majority."""
    journal = DurableJournal(str(tmp_path / "j"))
    sent: list[tuple[str, bool]] = []

    def record(self: Any, node: Any, message: dict[str, Any]) -> bool:
        sent.append((message["type"], journal.unsynced))
        return True

    monkeypatch.setattr(TCPTransport, "send", record)
    transport = DurableTransport.__new__(DurableTransport)  # no sockets needed
    transport._syncObj = SimpleNamespace(journal=journal)
    journal.add(*entries(1)[0])
    transport.send("leader", {"type": "next_node_idx", "success": False, "reset": True})
    assert sent == [("next_node_idx", True)]  # a refusal claims nothing: no sync
    transport.send("leader", {"type": "append_entries"})  # a leader may send first
    transport.send("leader", {"type": "next_node_idx", "success": True, "reset": False})
    assert sent[1:] == [("append_entries", True), ("next_node_idx", False)]


def test_a_torn_last_record_is_cut_off(tmp_path: Path) -> None:
    path, _ = filled(tmp_path, 3)  # written, then left as a crash leaves it
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - 3)  # the last write was interrupted
    reopened = DurableJournal(path)
    assert list(reopened[:]) == entries(2)
    reopened.add(b"next", 3, 1)
    assert list(DurableJournal(path)[:]) == [*entries(2), (b"next", 3, 1)]


def test_resent_entries_do_not_truncate_acknowledged_ones(tmp_path: Path) -> None:
    """PySyncObj defect 3: a follower dropped entries when the leader resent
    older ones without any term conflict."""
    path, journal = filled(tmp_path, 10)
    # What PySyncObj's append_entries handler does with a resend from index 4:
    journal.deleteEntriesFrom(3)
    for entry in entries(2, start=4):
        journal.add(*entry)
    assert list(DurableJournal(path)[:]) == entries(10)  # on disk all along
    # Until the handler ends, the log in view ends at the last entry sent.
    assert list(journal[:]) == entries(5)
    journal.setRaftCommitIndex(5)
    assert len(journal) == 10
    assert list(journal[:]) == entries(10)
    assert journal.kept_on_resend == 7 and journal.dropped_on_conflict == 0


def test_a_heartbeat_does_not_bring_an_unverified_tail_into_its_commit_index(
    tmp_path: Path,
) -> None:
    """A leader deposed while paused holds entries of its old term that nobody
    else has. The new leader's heartbeat (prevLogIdx where the logs agree, no
    entries) makes PySyncObj delete that tail, then take the commit index as
    min(the leader's, the last index in the log): the tail must be out of view
    by then, or the node applies writes that were never committed."""
    path, journal = filled(tmp_path, 6)
    journal.deleteEntriesFrom(3)  # the heartbeat: prevLogIdx 3, nothing new
    assert len(journal) == 3 and journal[-1][1] == 3  # what the commit index sees
    journal.setRaftCommitIndex(3)
    assert len(journal) == 6  # the tail is the log's again: only a conflict drops it
    journal.deleteEntriesFrom(3)  # the next heartbeat
    journal.deleteEntriesFrom(2)  # and one from further back: both tails aside, in order
    assert list(journal[:]) == entries(2)
    journal.add(b"cmd3", 3, 1)
    journal.add(b"new", 4, 2)  # the new leader's entry: 4, 5 and 6 go for good
    journal.setRaftCommitIndex(4)
    expected = [*entries(3), (b"new", 4, 2)]
    assert list(journal[:]) == expected
    assert list(DurableJournal(path)[:]) == expected
    assert journal.dropped_on_conflict == 3


def test_compaction_keeps_a_set_aside_tail_on_disk_and_aside(tmp_path: Path) -> None:
    path, journal = filled(tmp_path, 8)
    journal.deleteEntriesFrom(6)
    journal.deleteEntriesTo(2)
    assert list(journal[:]) == entries(4, start=3)
    assert list(DurableJournal(path)[:]) == entries(6, start=3)
    journal.add(b"cmd7", 7, 1)
    journal.setRaftCommitIndex(7)
    assert list(journal[:]) == entries(6, start=3)
    journal.add(b"cmd9", 9, 1)
    assert list(DurableJournal(path)[:]) == entries(7, start=3)


def test_a_conflicting_term_truncates_for_good(tmp_path: Path) -> None:
    path, journal = filled(tmp_path, 6)
    journal.deleteEntriesFrom(3)
    journal.add(b"cmd4", 4, 1)  # the same entry again
    journal.add(b"other", 5, 2)  # a different term: 5 and 6 go
    assert list(journal[:]) == [*entries(4), (b"other", 5, 2)]
    assert list(DurableJournal(path)[:]) == [*entries(4), (b"other", 5, 2)]


def test_compaction_keeps_the_tail_on_disk(tmp_path: Path) -> None:
    path, journal = filled(tmp_path, 8)
    journal.deleteEntriesTo(5)
    assert list(journal[:]) == entries(3, start=6)
    journal.add(b"cmd9", 9, 1)
    assert list(DurableJournal(path)[:]) == entries(4, start=6)


def test_align_to_a_dump_point_keeps_later_entries(tmp_path: Path) -> None:
    """PySyncObj defect 2: a journal that does not start at the dump point was
    thrown away whole on restart, later entries included."""
    path, journal = filled(tmp_path, 10)
    all_entries = entries(10)
    assert journal.align_to(all_entries[5], all_entries[6])
    assert journal[0] == all_entries[5] and journal[1] == all_entries[6]
    assert list(DurableJournal(path)[:]) == all_entries[5:]
    # A dump point the journal does not hold: nothing changes.
    assert not journal.align_to((b"x", 42, 1), (b"y", 43, 1))
    assert len(journal) == 5


def test_term_and_vote_are_stored_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    journal = DurableJournal(path)
    journal.setCurrentTerm(7, "127.0.0.1:9100")
    journal.setRaftCommitIndex(12)
    journal.onOneSecondTimer()
    reopened = DurableJournal(path)
    assert reopened.getCurrentTerm() == 7
    assert reopened.getVotedForNodeId() == "127.0.0.1:9100"
    assert reopened.getRaftCommitIndex() == 12
