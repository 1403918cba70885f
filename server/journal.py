"""The Raft log on disk: kokaq's own journal, installed where PySyncObj makes its.

PySyncObj 0.3.17's ``FileJournal`` writes through an mmap it never flushes and
lets a follower drop entries it already acknowledged. This journal mends both
behind the same interface (``pysyncobj.journal.Journal``):

* **Durable before anyone relies on it.** ``add`` writes its record; one
  ``fdatasync`` (``sync``) then covers every record written since the last. The
  journal syncs before the commit index moves (``setRaftCommitIndex``: nothing
  is applied, so no client hears "done", before it is on disk here), and the
  Raft transport syncs before a follower tells the leader it holds entries
  (``replication.DurableTransport``), so an acknowledged entry is on disk on a
  majority (on a single node: on that node). The entries proposed together in
  one tick share one sync: group commit on disk as in the log.
* **No truncation without a conflict.** PySyncObj deletes a follower's tail
  whenever the leader resends older entries, even if they match. Here
  ``deleteEntriesFrom`` only sets the tail aside (it stays on disk); ``add``
  puts a set-aside entry back when the leader resends the same (index, term),
  and drops the tail for good only when an entry's term differs, as Raft says.
  The rest of the tail stays out of view until the handler of that
  AppendEntries stores its commit index (``setRaftCommitIndex``, its last
  step): PySyncObj takes the commit index as min(the leader's, the last index
  in the log), and Raft allows no further than the last entry the leader sent.
  An unverified tail in view let a deposed leader apply its own uncommitted
  writes and answer them as done.
* **Journal kept across a dump.** ``align_to`` trims the journal to start at a
  dump's snapshot point, so PySyncObj's start-up check (journal must start at
  the dump point, else it is thrown away) keeps every later entry.
* **Plain data on disk.** Records carry a CRC; the metadata is msgpack, written
  to a temporary file, fsynced and renamed. A torn last record (a crash during a
  write, never acknowledged) is cut off at load.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from threading import Lock
from typing import Any

import msgpack
import pysyncobj.syncobj
from pysyncobj.journal import Journal

__all__ = ["DurableJournal", "Entry", "fsync_directory", "installed"]

Entry = tuple[bytes, int, int]  # (command, index, term), as PySyncObj has them

_HEAD = struct.Struct("<IQQ")  # command length, index, term
_TAIL = struct.Struct("<I")  # crc32 of head + command


def fsync_directory(path: str) -> None:
    """Make a rename or a new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: str, data: bytes) -> None:
    """Replace ``path`` by ``data``: temporary file, fsync, rename, fsync the folder."""
    tmp = f"{path}.tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_directory(os.path.dirname(os.path.abspath(path)))


class DurableJournal(Journal):  # type: ignore[misc]
    def __init__(self, path: str, dump_path: str | None = None) -> None:
        self._path = path
        self._dump_path = dump_path
        self._meta_path = f"{path}.meta"
        self._entries: list[Entry] = []
        self._offsets: list[int] = []  # where each entry's record starts
        self._set_aside: deque[Entry] = deque()  # a tail deleted without a conflict (yet)
        self._meta: dict[str, Any] = self._read_meta()
        self._meta_dirty = False
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._end = self._load()
        self._unsynced = False  # records written since the last fdatasync
        self.appends = 0  # records written, for tests and metrics
        self.syncs = 0  # fdatasyncs that covered them
        # Entries PySyncObj deleted with no conflict and this journal kept (the
        # defect it mends), and entries dropped for a term conflict (Raft's rule).
        self.kept_on_resend = 0
        self.dropped_on_conflict = 0

    # -- reading the file ------------------------------------------------------------

    def _load(self) -> int:
        with open(self._path, "rb") as f:
            data = f.read()
        offset = 0
        while offset + _HEAD.size + _TAIL.size <= len(data):
            length, index, term = _HEAD.unpack_from(data, offset)
            body_end = offset + _HEAD.size + length
            if body_end + _TAIL.size > len(data):
                break
            (crc,) = _TAIL.unpack_from(data, body_end)
            if crc != zlib.crc32(data[offset:body_end]):
                break
            self._entries.append((data[offset + _HEAD.size : body_end], index, term))
            self._offsets.append(offset)
            offset = body_end + _TAIL.size
        if offset != len(data):  # a torn write at the end: never acknowledged
            os.ftruncate(self._fd, offset)
            os.fsync(self._fd)
        return offset

    def _read_meta(self) -> dict[str, Any]:
        try:
            with open(self._meta_path, "rb") as f:
                meta = msgpack.unpackb(f.read())
        except FileNotFoundError:
            return {}
        return meta if isinstance(meta, dict) else {}

    # -- the Journal interface ----------------------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        if self._set_aside:
            first = self._set_aside[0]
            if first[1] == idx and first[2] == term:
                # The leader resent an entry this log already holds: keep it as is.
                self._set_aside.popleft()
                self.kept_on_resend += 1
                self._entries.append(first)
                self._offsets.append(self._offset_after_entries())
                return
            self._drop_set_aside()
        head = _HEAD.pack(len(command), idx, term)
        record = head + command
        record += _TAIL.pack(zlib.crc32(record))
        os.pwrite(self._fd, record, self._end)
        self._unsynced = True
        self.appends += 1
        self._entries.append((bytes(command), idx, term))
        self._offsets.append(self._end)
        self._end += len(record)

    def clear(self) -> None:
        self._set_aside.clear()
        self._sync_dump()
        self._truncate_file(0)
        self._entries.clear()
        self._offsets.clear()

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        # On disk the set-aside tail follows the entries in view: prepend.
        self._set_aside.extendleft(reversed(self._entries[entryFrom:]))
        del self._entries[entryFrom:]
        del self._offsets[entryFrom:]

    def deleteEntriesTo(self, entryTo: int) -> None:
        """Compaction: the dump is written; keep only the entries from ``entryTo``
        (and a set-aside tail after them, still set aside)."""
        self._sync_dump()
        kept = self._entries[entryTo:]
        tmp = f"{self._path}.compact"
        offsets: list[int] = []
        with open(tmp, "wb") as f:
            for command, index, term in [*kept, *self._set_aside]:
                offsets.append(f.tell())
                record = _HEAD.pack(len(command), index, term) + command
                f.write(record + _TAIL.pack(zlib.crc32(record)))
            del offsets[len(kept) :]
            end = f.tell()
            f.flush()
            os.fsync(f.fileno())
        self._unsynced = False  # the new file holds every entry, synced
        os.replace(tmp, self._path)
        fsync_directory(os.path.dirname(os.path.abspath(self._path)))
        os.close(self._fd)
        self._fd = os.open(self._path, os.O_RDWR)
        self._entries, self._offsets, self._end = kept, offsets, end

    def __getitem__(self, item: Any) -> Any:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def _destroy(self) -> None:
        self.sync()
        self.onOneSecondTimer()
        os.close(self._fd)

    def flush(self) -> None:
        self.sync()

    def sync(self) -> None:
        """Make every record written so far durable (one fdatasync, if any is new)."""
        if self._unsynced:
            os.fdatasync(self._fd)
            self._unsynced = False
            self.syncs += 1

    @property
    def unsynced(self) -> bool:
        return self._unsynced

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        # A commit index covers only entries on disk: what it covers is applied
        # and answered, and the stored index must never outrun the journal.
        self.sync()
        if self._meta.get("commit") != raftCommitIndex:
            self._meta["commit"] = raftCommitIndex
            self._meta_dirty = True
        # The AppendEntries handler is done: what the leader did not contradict
        # is this log's again (an election counts it, as Raft's would).
        self._settle()

    def getRaftCommitIndex(self) -> int:
        return int(self._meta.get("commit", 1))

    def setCurrentTerm(self, term: int, votedForNodeId: str | None) -> None:
        # Raft: the term and vote must be durable before any message shows them.
        self._meta["term"] = term
        self._meta["voted_for"] = votedForNodeId
        self._store_meta()

    def getCurrentTerm(self) -> int:
        return int(self._meta.get("term", 0))

    def getVotedForNodeId(self) -> str | None:
        voted = self._meta.get("voted_for")
        return None if voted is None else str(voted)

    def onOneSecondTimer(self) -> None:
        if self._meta_dirty:
            self._store_meta()

    # -- kokaq's additions -----------------------------------------------------------------

    def align_to(self, first: Entry, second: Entry) -> bool:
        """Drop the entries before ``first`` if the journal holds the dump point
        ``first, second``; True when it does (PySyncObj then keeps the rest)."""
        for position, entry in enumerate(self._entries):
            if entry[1] == first[1]:
                following = self._entries[position + 1 : position + 2]
                if entry == first and following == [second]:
                    if position:
                        self.deleteEntriesTo(position)
                    return True
                return False
        return False

    # -- helpers -----------------------------------------------------------------------------

    def _settle(self) -> None:
        """Put a set-aside tail back: nothing conflicted with it."""
        if not self._set_aside:
            return
        offset = self._offset_after_entries_end()
        for entry in self._set_aside:
            self._entries.append(entry)
            self._offsets.append(offset)
            offset += _HEAD.size + len(entry[0]) + _TAIL.size
        self.kept_on_resend += len(self._set_aside)
        self._set_aside.clear()

    def _offset_after_entries(self) -> int:
        if len(self._entries) == 1:
            return 0
        previous = self._entries[-2]
        return self._offsets[-1] + _HEAD.size + len(previous[0]) + _TAIL.size

    def _drop_set_aside(self) -> None:
        """A conflicting entry arrived: the set-aside tail goes for good."""
        cut = self._offset_after_entries_end()
        self.dropped_on_conflict += len(self._set_aside)
        self._set_aside.clear()
        self._truncate_file(cut)

    def _offset_after_entries_end(self) -> int:
        if not self._entries:
            return 0
        last = self._entries[-1]
        return self._offsets[-1] + _HEAD.size + len(last[0]) + _TAIL.size

    def _truncate_file(self, size: int) -> None:
        os.ftruncate(self._fd, size)
        os.fsync(self._fd)
        self._unsynced = False
        self._end = size

    def _sync_dump(self) -> None:
        """The dump replaces what the journal loses: make sure it is on disk first."""
        if self._dump_path and os.path.exists(self._dump_path):
            fd = os.open(self._dump_path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            fsync_directory(os.path.dirname(os.path.abspath(self._dump_path)))

    def _store_meta(self) -> None:
        write_durably(self._meta_path, msgpack.packb(self._meta))
        self._meta_dirty = False


_install_lock = Lock()


@contextmanager
def installed(journal: DurableJournal) -> Iterator[None]:
    """While constructing a SyncObj, make PySyncObj use ``journal``.

    ``SyncObj.__init__`` builds its journal with ``createJournal(journalFile)``;
    this swaps that factory for the duration of the constructor only.
    """
    with _install_lock:
        original = pysyncobj.syncobj.createJournal
        pysyncobj.syncobj.createJournal = lambda _path=None: journal
        try:
            yield
        finally:
            pysyncobj.syncobj.createJournal = original
