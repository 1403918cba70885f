"""The engine as the state machine of a PySyncObj Raft group (DESIGN.md section 3).

One replicated method, ``apply``, takes a group-committed batch: msgpack of
``[now, [[rpc name, request bytes, ids], ...]]``. The proposer stamped ``now``
and the ids, so every replica computes the same thing. ``apply`` never raises:
each operation's KokaqError (or an unexpected exception) becomes its result.

PySyncObj 0.3.17's defects and where they are mended:

1. an unflushed mmap journal -> ``DurableJournal`` syncs its entries before
   the commit index covers them, and ``DurableTransport`` before a follower
   tells the leader it holds them (entries written together share one sync);
2. forked compaction children and a journal thrown away on restart -> the
   dump is written by a child of kokaq's own (``dumps.BackgroundDumps``) that
   never installs it: the node moves it into place once the child succeeded,
   synced, before the journal is cut; and on start the journal is aligned to
   the dump point (``DurableJournal.align_to``);
3. a follower truncating acknowledged entries -> ``DurableJournal`` only
   drops entries on a term conflict;
4. callbacks lost when a snapshot is installed -> ``on_snapshot`` fails every
   pending batch at once, and the committer fails any batch whose callback is
   late (``Unavailable``: the outcome is unknown, retry with the dedup key);
5. pickle over an open port -> a password is always set (a random one on a
   single node) and the Raft port binds only the address given;
6. (found by kokaq's history checker) a follower applying entries nobody
   committed: while the leader sends it a snapshot, PySyncObj takes each chunk's
   commit index as min(the leader's, the follower's last index) and applies its
   own log that far, though no entry of it was checked against the leader's. A
   deposed leader applied its last uncommitted writes this way, and its clients
   heard they were done. ``_SyncObj__onMessageReceived`` keeps the commit index
   where it was for such messages;
7. (found by the network-partition test) a follower with a divergent tail of
   two entries or more never catching up: the leader let a stale refusal raise
   the follower's next index again. ``_SyncObj__onMessageReceived`` lets a
   refusal only lower it.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj.transport import TCPTransport

from kokaq.core import Engine, KokaqError
from kokaq.server.dumps import BackgroundDumps
from kokaq.server.journal import DurableJournal, Entry, installed
from kokaq.server.log_format import FIRST, LOG_FORMAT
from kokaq.server.operations import OPERATIONS

__all__ = [
    "AGREE_FORMAT",
    "ANNOUNCE",
    "TICK",
    "DurableTransport",
    "Members",
    "RaftSettings",
    "ReplicatedEngine",
    "apply_batch",
    "read_dump_point",
]

log = logging.getLogger("kokaq.server.replication")

#: The internal operation that applies due transitions (not an RPC).
TICK = "Tick"
#: The internal operation by which a member tells the others its addresses
#: and the newest log format it applies (request: "raft grpc http format"), so
#: NotLeader can name where to go and the cluster can agree on a format.
ANNOUNCE = "Announce"
#: The internal operation by which the cluster agrees on a log format
#: (request: the format's number; see ``log_format``).
AGREE_FORMAT = "LogFormat"
_DUMP_FORMAT = 1


@dataclass(frozen=True, slots=True)
class RaftSettings:
    """Raft timing. The defaults commit in about 10 ms and fail over within 2 s;
    ``compaction_entries`` bounds the journal (each entry is a whole batch)."""

    append_entries_period: float = 0.01
    tick_period: float = 0.005
    election_timeout_min: float = 0.4
    election_timeout_max: float = 1.2
    # A leader that hears from no majority this long steps down (PySyncObj's
    # default, 30 s, left a cut-off leader serving stale reads that long while
    # the majority's new leader took writes).
    leader_fallback: float = 2.0
    # How often a member retries its connection to a peer it lost. PySyncObj's
    # 5 s default left two members that had lost each other (one restarted)
    # unable to elect for up to 5 s if the leader died meanwhile: a member
    # connected to nobody calls no election.
    reconnect_interval: float = 0.25
    compaction_entries: int = 20_000
    compaction_seconds: float = 300.0


@dataclass
class Members:
    """What the members told each other through the log (replicated, in dumps):
    each one's addresses and newest log format (by Raft address), and the
    format they agreed on."""

    grpc: dict[str, str] = field(default_factory=dict)
    http: dict[str, str] = field(default_factory=dict)
    formats: dict[str, int] = field(default_factory=dict)
    log_format: int = FIRST

    def announced(self, request: bytes) -> None:
        # "raft grpc" from the first builds, "raft grpc http" from the builds
        # before log formats (format 1), "raft grpc http format" now.
        raft_address, grpc_address, *rest = request.decode().split(" ")
        self.grpc[raft_address] = grpc_address
        if rest:
            self.http[raft_address] = rest[0]
        self.formats[raft_address] = int(rest[1]) if len(rest) > 1 else FIRST

    def supported_by_all(self, addresses: list[str]) -> int:
        """The newest format every one of ``addresses`` announced it applies
        (one that announced nothing counts as the first format)."""
        return min((self.formats.get(address, FIRST) for address in addresses), default=LOG_FORMAT)

    def to_dump(self) -> dict[str, Any]:
        return {
            "grpc_addresses": dict(self.grpc),
            "http_addresses": dict(self.http),
            "log_formats": dict(self.formats),
            "log_format": self.log_format,
        }

    @classmethod
    def from_dump(cls, dump: dict[str, Any]) -> Members:
        return cls(
            dict(dump.get("grpc_addresses", {})),
            dict(dump.get("http_addresses", {})),
            dict(dump.get("log_formats", {})),
            int(dump.get("log_format", FIRST)),
        )


def apply_batch(
    engine: Engine,
    payload: bytes,
    members: Members | None = None,
    on_newer_format: Callable[[int], None] | None = None,
) -> list[Any]:
    """Run every operation of a batch; one result (or KokaqError) each. Never
    raises. ``members`` takes the announcements and the agreed log format. A
    format newer than this build's stops the batch there: nothing after it
    is applied, and ``on_newer_format(format)`` is told (the node stops)."""
    try:
        now, operations = msgpack.unpackb(payload)
    except Exception as error:  # a corrupt command must not stall the log
        log.error("unreadable command: %r", error)
        return []
    results: list[Any] = []
    for name, request_bytes, ids in operations:
        try:
            if name == TICK:
                results.append(engine.tick(now))
                continue
            if name == ANNOUNCE:
                if members is not None:
                    members.announced(bytes(request_bytes))
                results.append(None)
                continue
            if name == AGREE_FORMAT:
                agreed = int(bytes(request_bytes))
                if agreed > LOG_FORMAT:
                    log.critical("the log needs format %d, newer than this build's", agreed)
                    if on_newer_format is not None:
                        on_newer_format(agreed)
                    return results
                if members is not None:
                    members.log_format = max(members.log_format, agreed)
                results.append(None)
                continue
            operation = OPERATIONS[name]
            request = operation.request.FromString(request_bytes)
            results.append(operation.run(engine, request, now, ids))
        except KokaqError as error:
            results.append(error)
        except Exception as error:  # a bug: report it, keep the log moving
            log.exception("operation %s failed unexpectedly", name)
            results.append(KokaqError(f"internal error in {name}: {type(error).__name__}"))
    return results


def read_dump_point(path: str) -> tuple[Entry, Entry] | None:
    """The snapshot point of the dump at ``path`` (its two last entries), if any."""
    try:
        with open(path, "rb") as f:
            dump = msgpack.unpackb(f.read())
        return _entry(dump["prev"]), _entry(dump["last"])
    except FileNotFoundError:
        return None


def _entry(data: list[Any]) -> Entry:
    return bytes(data[0]), int(data[1]), int(data[2])


class DurableTransport(TCPTransport):  # type: ignore[misc]
    """PySyncObj's TCP transport, but a follower's "I hold these entries" (a
    successful ``next_node_idx``) leaves only once they are on disk: the
    leader counts that answer towards a majority. The journal's ``add`` no
    longer syncs each entry, so all the entries of one AppendEntries share one
    fdatasync."""

    def send(self, node: Any, message: Any) -> bool:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "next_node_idx" and message.get("success"):
            self._syncObj.journal.sync()
        return bool(super().send(node, message))


class ReplicatedEngine(SyncObj):  # type: ignore[misc]
    """A Raft replica of the engine. ``lock`` guards the engine: apply takes it
    in the Raft thread, reads take it in the server's thread; snapshots are
    rendered without it, in a forked child (``dumps``)."""

    def __init__(
        self,
        self_address: str,
        peers: list[str],
        data_dir: str,
        *,
        password: str | None = None,
        settings: RaftSettings | None = None,
        on_snapshot: Callable[[int], None] | None = None,
        on_state_changed: Callable[[int, int], None] | None = None,
        on_newer_format: Callable[[int], None] | None = None,
    ) -> None:
        settings = settings or RaftSettings()
        self.self_address = self_address
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
        self.engine = Engine()
        self.members = Members()  # replicated
        self.lock = threading.Lock()
        self.on_snapshot = on_snapshot
        self._on_newer_format = on_newer_format
        #: A log format newer than this build's, once met: nothing more is applied.
        self.newer_format: int | None = None
        journal_path = os.path.join(data_dir, "raft.journal")
        dump_path = os.path.join(data_dir, "raft.dump")
        self.journal = DurableJournal(journal_path, dump_path)
        self._dumps = BackgroundDumps(dump_path, self._dump_bytes)
        point = read_dump_point(dump_path)
        if point is not None:
            self.journal.align_to(*point)
        conf = SyncObjConf(
            journalFile=journal_path,
            fullDumpFile=dump_path,
            serializer=self._dumps.start,
            serializeChecker=self._dumps.status,
            deserializer=self._read_dump,
            # Without a password PySyncObj unpickles whatever reaches its port.
            password=password or secrets.token_urlsafe(32),
            bindAddress=self_address,
            appendEntriesPeriod=settings.append_entries_period,
            autoTickPeriod=settings.tick_period,
            raftMinTimeout=settings.election_timeout_min,
            raftMaxTimeout=settings.election_timeout_max,
            leaderFallbackTimeout=settings.leader_fallback,
            connectionRetryTime=settings.reconnect_interval,
            connectionTimeout=max(3.5, settings.election_timeout_max),
            logCompactionMinEntries=settings.compaction_entries,
            logCompactionMinTime=settings.compaction_seconds,
            commandsWaitLeader=False,
            onStateChanged=on_state_changed,
            # Members added and removed one at a time (Cluster.AddMember / RemoveMember);
            # the member list lives in the dump, so a restart keeps the changes.
            # Not for a single node: its Raft port may change at each start (port
            # 0), and the list in its dump would then name a member that is gone.
            dynamicMembershipChange=bool(peers),
            # Our own tick loop (below) instead of PySyncObj's; unbatched appends
            # wake the loop when a command is proposed and send it to followers at once.
            autoTick=False,
            appendEntriesUseBatch=False,
        )
        self._tick_period = settings.tick_period
        self._in_raft_thread: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._submitted = 0  # batches proposed; the tick loop compares it to what it has seen
        self._stopping = threading.Event()
        with installed(self.journal):
            super().__init__(self_address, peers, conf, transportClass=DurableTransport)
        self._ticker = threading.Thread(target=self._tick_loop, name="kokaq-raft", daemon=True)
        self._ticker.start()

    # -- the replicated state machine --------------------------------------------------

    @replicated  # type: ignore[untyped-decorator]
    def apply(self, payload: bytes) -> list[Any]:
        if self.newer_format is not None:
            return []
        with self.lock:
            return apply_batch(self.engine, payload, self.members, self._met_newer_format)

    def _met_newer_format(self, log_format: int) -> None:
        self.newer_format = log_format
        if self._on_newer_format is not None:
            self._on_newer_format(log_format)

    def submit(self, payload: bytes, callback: Callable[[Any, int], None]) -> None:
        """Propose a batch; ``callback(results, fail_reason)`` runs in the Raft thread."""
        self._submitted += 1
        self.apply(payload, callback=callback)

    # -- the Raft thread ----------------------------------------------------------------------

    def _tick_loop(self) -> None:
        """PySyncObj's tick appends proposed commands at its end, then sleeps a tick
        period before it looks at the commit index again. When something was
        proposed, tick twice at once instead: the first tick appends (and sends to
        followers), the second commits and applies it when a quorum already has it,
        as a single node always does. That saves a tick period per write."""
        seen = 0
        while not self._stopping.is_set():
            try:
                while not self._in_raft_thread.empty():
                    self._in_raft_thread.get_nowait()()
                self.doTick(self._tick_period)
                if self._submitted != seen:
                    seen = self._submitted
                    self.doTick(0.0)
                    self.doTick(0.0)
            except Exception:  # as PySyncObj's own loop: log, pause, go on
                log.exception("raft tick failed")
                self._stopping.wait(self._tick_period)

    def destroy_synchronous(self) -> None:
        """Stop the tick loop, then close the transport and the journal."""
        self._stopping.set()
        self._ticker.join()
        self._dumps.stop()
        self.destroy()

    # -- snapshots (log compaction) ------------------------------------------------------

    def _dump_bytes(self, point: tuple[Any, Any, Any]) -> bytes:
        """The dump at ``point``. It runs in the forked writer, whose engine is
        the image of the Raft thread's between two applies: no lock (another
        thread may have held it at the fork, and would hold it forever here)."""
        last, prev, cluster = point
        dump = {
            **self.members.to_dump(),
            "format": _DUMP_FORMAT,
            "engine": self.engine.snapshot(),
            "last": list(last),
            "prev": list(prev),
            "cluster": sorted(str(node.id) for node in cluster),
        }
        return bytes(msgpack.packb(dump))

    def _read_dump(self, path: str) -> tuple[Entry, Entry, list[str]]:
        with open(path, "rb") as f:
            dump = msgpack.unpackb(f.read())
        members = Members.from_dump(dump)
        if members.log_format > LOG_FORMAT:
            log.critical("the dump needs log format %d", members.log_format)
            self._met_newer_format(members.log_format)
        with self.lock:
            self.engine = Engine.restore(dump["engine"])
            self.members = members
        if self.on_snapshot is not None:
            self.on_snapshot(int(dump["last"][1]))
        # The members at the snapshot, less this one: PySyncObj (with dynamic
        # membership) takes the list as the *other* members, and compares them
        # with itself as Node objects, never equal to the strings stored here,
        # so this member would count itself as a peer and miss its quorum.
        others = [address for address in dump["cluster"] if address != self.self_address]
        return _entry(dump["last"]), _entry(dump["prev"]), others

    # -- status ------------------------------------------------------------------------------

    def leader_address(self) -> str | None:
        """The leader's Raft address."""
        leader = self._getLeader()
        return None if leader is None else str(leader.id)

    def leader_hint(self) -> str | None:
        """Where clients should send writes: the leader's gRPC address, once it
        has announced it (None before: a Raft address would mislead clients)."""
        leader = self.leader_address()
        return None if leader is None else self.members.grpc.get(leader)

    def leader_http(self) -> str | None:
        """The leader's HTTP address (REST, dashboard), once announced."""
        leader = self.leader_address()
        return None if leader is None else self.members.http.get(leader)

    def announce(
        self, raft_address: str, grpc_address: str, http_address: str, log_format: int
    ) -> None:
        """Propose (through the leader, from any member) this member's gRPC and
        HTTP addresses and the newest log format it will apply."""
        request = f"{raft_address} {grpc_address} {http_address} {log_format}".encode()
        payload = msgpack.packb([0, [[ANNOUNCE, request, []]]])
        self.submit(payload, lambda result, error: None)

    def change_membership(
        self, action: str, address: str, callback: Callable[[Any, int], None]
    ) -> None:
        """``add`` or ``remove`` one member (its Raft address), or ``transfer``
        leadership to it ("" = the most caught-up follower). Runs in the Raft
        thread: PySyncObj's state is not safe to touch from another."""

        def start() -> None:
            try:
                if action == "add":
                    self.addNodeToCluster(address, callback=callback)
                elif action == "remove":
                    self.removeNodeFromCluster(address, callback=callback)
                else:
                    self.transferLeadership(address or None, callback=callback)
            except Exception:  # an address PySyncObj cannot parse, say
                log.exception("membership change %s %s failed", action, address)
                callback(None, FAIL_REASON.REQUEST_DENIED)

        self._in_raft_thread.put(start)
        self._submitted += 1  # wake the tick loop

    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:
        """Defects 6 and 7, mended on the way into PySyncObj's handler."""
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "append_entries" and "prevLogIdx" not in message and "commit_index" in message:
            # 6: a snapshot chunk proves nothing about this log: it may not move
            # the commit index.
            leader_commit = message["commit_index"]
            message["commit_index"] = min(leader_commit, self._SyncObj__raftCommitIndex)
            super()._SyncObj__onMessageReceived(node, message)
            self._SyncObj__leaderCommitIndex = leader_commit  # for readiness: the true lag
            return
        if kind == "next_node_idx" and message.get("reset") and not message.get("success"):
            # 7: a refusal may only move a follower's next index back. The leader
            # pipelines several AppendEntries a tick; the answer to the first
            # found a conflict at p, the answers to the rest ("no entry there")
            # name the follower's last index + 1, beyond p, and PySyncObj took
            # them: it walked back and forth forever over a follower's divergent
            # tail of two entries or more, which never caught up.
            current = self._SyncObj__raftNextIndex.get(node)
            if current is not None and message.get("next_node_idx", 0) > current:
                message["reset"] = False
        super()._SyncObj__onMessageReceived(node, message)

    def is_leader(self) -> bool:
        return bool(self._isLeader())

    def format_all_apply(self, own: int) -> int:
        """The newest log format every member applies: ``own`` for this one,
        what the others of the Raft configuration announced."""
        others = [str(node.id) for node in list(self._SyncObj__otherNodes)]
        return min(own, self.members.supported_by_all(others))

    def getStatus(self) -> dict[str, Any]:
        """PySyncObj's status, plus what the journal did with deleted entries."""
        status: dict[str, Any] = super().getStatus()
        status["journal_appends"] = self.journal.appends
        status["journal_syncs"] = self.journal.syncs
        status["journal_kept_on_resend"] = self.journal.kept_on_resend
        status["journal_dropped_on_conflict"] = self.journal.dropped_on_conflict
        status["log_format"] = self.members.log_format
        return status

    def term(self) -> int:
        """The current Raft term (PySyncObj 0.3.17's private field: getStatus()
        builds a whole dictionary, too slow to ask on every read)."""
        return int(self._SyncObj__raftCurrentTerm)
