"""A Jepsen-style history of client operations, and the checker of what
kokaq promises while nodes die, pause and restart.

Every enqueue, dequeue, ack and nack that test clients make is recorded with
its wall-clock invoke and completion times and its outcome: ``ok``, ``fail``
(the node answered that it did nothing) or ``info`` (unknown: the call timed
out or its node died; it may or may not have applied). Nodes stamp ``now``
from the same clock, so a lease's grant time (its deadline less its lease
length) can be compared with the clients' times.

``check`` then reads the history and the final state of every message and
reports each broken promise:

* no acknowledged enqueue is lost, and none is stored twice;
* no message is held by two live leases at once: a new lease before the
  previous one's deadline, with no ack or nack of the previous one sent before
  it (a refused nack counts as sent: it may be the SDK's retry of one that
  applied, so an overlap after a nack that really failed goes unseen);
* no acknowledged (acked) message is delivered again;
* every message ends acked, dead-lettered or still queued (the tests set no
  TTL, so none may expire), and only a message someone acked ends succeeded;
* nothing is delivered that was never enqueued.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from kokaq.client import Client, Leased, RetryPolicy
from kokaq.core import (
    KokaqError,
    MessageNotFound,
    MessageState,
    MessageView,
    QueueConfig,
    RetentionPolicy,
    Unavailable,
)

Outcome = Literal["ok", "fail", "info"]

#: Nodes round ``now`` to whole milliseconds; allow that much and a little more.
SLACK_MS = 5


@dataclass(frozen=True)
class Lease:
    message_id: str
    lock_id: str
    deliveries: int  # this lease is the message's n-th delivery
    granted_ms: int  # the node's ``now`` when it leased
    deadline_ms: int


@dataclass(frozen=True)
class Op:
    process: int  # the client thread that made the call
    kind: Literal["enqueue", "dequeue", "ack", "nack"]
    invoked: float  # time.time() before the call
    completed: float  # and after it
    outcome: Outcome
    message_ids: tuple[str, ...] = ()  # enqueue: the ids answered; ack / nack: the message
    count: int = 0  # enqueue: how many messages the call carried
    leases: tuple[Lease, ...] = ()  # dequeue: what it leased
    lock_id: str = ""  # ack / nack: the lease settled
    error: str = ""


def outcome_of(error: KokaqError) -> Outcome:
    """``Unavailable`` leaves the outcome unknown (the SDK may have retried a
    call that applied); every other error is a refusal that changed nothing."""
    return "info" if isinstance(error, Unavailable) else "fail"


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)  # list.append is atomic: threads share it

    def add(self, op: Op) -> None:
        self.ops.append(op)

    def of(self, kind: str, outcome: Outcome | None = None) -> list[Op]:
        return [o for o in self.ops if o.kind == kind and outcome in (None, o.outcome)]

    def acks_since(self, moment: float = 0.0) -> int:
        """How many acks sent after ``moment`` (time.time()) succeeded."""
        return sum(o.invoked > moment for o in self.of("ack", "ok"))

    def delivered(self) -> set[str]:
        """The ids of every message a dequeue handed out."""
        return {lease.message_id for o in self.of("dequeue", "ok") for lease in o.leases}

    def enqueued(self) -> set[str]:
        """The ids of every acknowledged enqueue."""
        return {i for o in self.of("enqueue", "ok") for i in o.message_ids}


class RecordingQueue:
    """A queue of the SDK whose calls land in a history."""

    def __init__(self, history: History, process: int, client: Client, lease_ms: int) -> None:
        self.history = history
        self.process = process
        self.queue = client.queue("n", "q")
        self.lease_ms = lease_ms

    def _record(self, kind: str, invoked: float, outcome: Outcome, **fields: object) -> None:
        self.history.add(Op(self.process, kind, invoked, time.time(), outcome, **fields))  # type: ignore[arg-type]

    def enqueue(self, count: int) -> None:
        invoked = time.time()
        try:
            results = self.queue.enqueue_many([b"m"] * count)
        except KokaqError as error:
            self._record("enqueue", invoked, outcome_of(error), count=count, error=repr(error))
            return
        ids = tuple(r.message_id for r in results)
        self._record("enqueue", invoked, "ok", count=count, message_ids=ids)

    def dequeue(self, count: int) -> list[Leased]:
        invoked = time.time()
        try:
            leased = self.queue.dequeue(count, visibility_timeout_ms=self.lease_ms)
        except KokaqError as error:
            self._record("dequeue", invoked, outcome_of(error), count=count, error=repr(error))
            return []
        leases = tuple(
            Lease(m.id, m.message.lock_id or "", m.message.deliveries,
                  (m.lock_deadline or 0) - self.lease_ms, m.lock_deadline or 0)
            for m in leased
        )  # fmt: skip
        self._record("dequeue", invoked, "ok", count=count, leases=leases)
        return leased

    def ack(self, leased: Sequence[Leased]) -> None:
        """One AckBatch; each message's ack is recorded as its own operation."""
        invoked = time.time()
        try:
            answers: Sequence[KokaqError | None] = self.queue.ack_many(leased)
            outcome: Outcome | None = None
        except KokaqError as error:
            answers, outcome = [error] * len(leased), outcome_of(error)
        for m, answer in zip(leased, answers, strict=True):
            self._record(
                "ack", invoked,
                "ok" if answer is None else outcome or outcome_of(answer),
                message_ids=(m.id,), lock_id=m.message.lock_id or "",
                error="" if answer is None else repr(answer),
            )  # fmt: skip

    def nack(self, leased: Leased) -> None:
        invoked = time.time()
        lock = {"message_ids": (leased.id,), "lock_id": leased.message.lock_id or ""}
        try:
            leased.nack("checked", delay_ms=0)
        except KokaqError as error:
            self._record("nack", invoked, outcome_of(error), error=repr(error), **lock)
            return
        self._record("nack", invoked, "ok", **lock)


class Workload:
    """Producers and consumers on queue n/q of a cluster, every call recorded,
    until stopped. A failed call is recorded and the thread goes on, as a real
    client would. Consumers ack nine messages in ten and nack the tenth."""

    def __init__(
        self,
        addresses: Callable[[], Sequence[str]],
        history: History,
        *,
        producers: int = 2,
        consumers: int = 2,
        batch: int = 20,
        lease_ms: int = 3_000,
        retry_timeout: float = 20.0,
        pause: float = 0.05,
        seed: int = 1,
    ) -> None:
        """Each producer sends a batch every ``pause`` seconds at most, so the
        consumers keep up and the end state stays quick to read."""
        self.addresses = addresses
        self.history = history
        self.batch = batch
        self.pause = pause
        self.lease_ms = lease_ms
        self.retry_timeout = retry_timeout
        self.stopping = threading.Event()
        roles = [self._produce] * producers + [self._consume] * consumers
        self.threads = [
            threading.Thread(target=role, args=(process, random.Random(seed + process)))
            for process, role in enumerate(roles)
        ]
        for t in self.threads:
            t.start()

    def _client(self) -> Client:
        return Client(list(self.addresses()), retry=RetryPolicy(timeout=self.retry_timeout))

    def _produce(self, process: int, _rng: random.Random) -> None:
        with self._client() as client:
            queue = RecordingQueue(self.history, process, client, self.lease_ms)
            while not self.stopping.wait(self.pause):
                queue.enqueue(self.batch)

    def _consume(self, process: int, rng: random.Random) -> None:
        with self._client() as client:
            queue = RecordingQueue(self.history, process, client, self.lease_ms)
            while not self.stopping.is_set():
                leased = queue.dequeue(self.batch)
                if not leased:
                    time.sleep(0.01)
                    continue
                failing = [m for m in leased if rng.random() < 0.1]
                for m in failing:
                    queue.nack(m)
                done = [m for m in leased if m not in failing]
                if done:
                    queue.ack(done)

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(60)
        assert not any(t.is_alive() for t in self.threads), "a client thread hangs"


def create_checked_queue(client: Client) -> None:
    """Queue n/q, keeping every succeeded message (the checker reads them)."""
    client.create_namespace("n")
    retention = RetentionPolicy(period_ms=24 * 3_600_000, max_count=1_000_000)
    client.create_queue("n", "q", QueueConfig(retention=retention))


def final_states(client: Client, message_ids: Iterable[str]) -> dict[str, MessageView | None]:
    """Each message as the cluster has it now (None: no such message)."""
    queue = client.queue("n", "q")

    def read(message_id: str) -> MessageView | None:
        try:
            return queue.get(message_id)
        except MessageNotFound:
            return None

    ids = sorted(message_ids)
    with ThreadPoolExecutor(4) as pool:
        return dict(zip(ids, pool.map(read, ids), strict=True))


def check_cluster(history: History, client: Client) -> list[str]:
    """``check`` against the end state the cluster holds now."""
    final = final_states(client, known_ids(history))
    stats = client.queue("n", "q").stats()
    total = stats.ready + stats.delayed + stats.leased + stats.succeeded + stats.dead
    return check(history, final, total)


def known_ids(history: History) -> set[str]:
    """Every message id the clients saw: enqueued or delivered."""
    return history.enqueued() | history.delivered()


def check(history: History, final: dict[str, MessageView | None], total: int) -> list[str]:
    """Every broken promise found, as sentences (an empty list: none).
    ``final`` holds the end state of every id in ``known_ids(history)``;
    ``total`` is how many messages the queue holds in all states."""
    problems: list[str] = []
    problems += _check_enqueues(history, final, total)
    problems += _check_leases(history)
    problems += _check_ends(history, final)
    return problems


def _check_enqueues(
    history: History, final: dict[str, MessageView | None], total: int
) -> list[str]:
    problems = []
    answered: dict[str, int] = {}
    for index, op in enumerate(history.of("enqueue", "ok")):
        for message_id in op.message_ids:
            if answered.setdefault(message_id, index) != index:
                problems.append(f"{message_id}: two enqueues were answered with this id")
    unknown = sum(o.count for o in history.of("enqueue", "info"))
    if not len(answered) <= total <= len(answered) + unknown:
        problems.append(
            f"the queue holds {total} messages: {len(answered)} were acknowledged and "
            f"at most {unknown} more may have applied"
        )
    strangers = history.delivered() - set(answered)
    if len(strangers) > unknown:
        problems.append(
            f"{len(strangers)} delivered messages were never enqueued: {sorted(strangers)[:5]}"
        )
    return problems


def _check_leases(history: History) -> list[str]:
    problems = []
    leases: dict[str, list[Lease]] = defaultdict(list)
    for op in history.of("dequeue", "ok"):
        for lease in op.leases:
            leases[lease.message_id].append(lease)
            if (
                not op.invoked * 1000 - SLACK_MS
                <= lease.granted_ms
                <= op.completed * 1000 + SLACK_MS
            ):
                problems.append(
                    f"{lease.message_id}: leased at {lease.granted_ms}, outside its call"
                )
    # A lease is (message id, lock id): one dequeue leases all it hands out under
    # one lock id. Its settles are the acks and nacks that may have applied: a
    # refused ack did nothing (an ack repeated after a lost answer succeeds), but
    # a refused nack may be the SDK's retry of one that applied, so it counts.
    settles: dict[tuple[str, str], list[Op]] = defaultdict(list)
    acked: set[tuple[str, str]] = set()  # the leases acked for sure
    for op in history.of("ack") + history.of("nack"):
        key = (op.message_ids[0], op.lock_id)
        if op.kind == "nack" or op.outcome != "fail":
            settles[key].append(op)
        if op.kind == "ack" and op.outcome == "ok":
            acked.add(key)
    for message_id, held in leases.items():
        held.sort(key=lambda lease: lease.deliveries)
        for earlier, later in itertools.pairwise(held):
            if earlier.deliveries == later.deliveries:
                problems.append(f"{message_id}: delivery {later.deliveries} was handed out twice")
            if (message_id, earlier.lock_id) in acked:
                problems.append(
                    f"{message_id}: delivered again (delivery {later.deliveries}) after its ack"
                )
            settled = any(
                s.invoked * 1000 <= later.granted_ms + SLACK_MS
                for s in settles[message_id, earlier.lock_id]
            )
            if later.granted_ms < earlier.deadline_ms and not settled:
                problems.append(
                    f"{message_id}: leased again at {later.granted_ms} while lease "
                    f"{earlier.lock_id} was live until {earlier.deadline_ms}"
                )
        for lease in held:
            for s in settles[message_id, lease.lock_id]:
                if s.outcome == "ok" and s.invoked * 1000 > lease.deadline_ms + SLACK_MS:
                    problems.append(
                        f"{message_id}: {s.kind} accepted after lease {lease.lock_id} ended"
                    )
    return problems


def _check_ends(history: History, final: dict[str, MessageView | None]) -> list[str]:
    problems = []
    unread = known_ids(history) - set(final)
    if unread:
        problems.append(
            f"the end state of {len(unread)} messages was not read: {sorted(unread)[:5]}"
        )
    acked = {o.message_ids[0] for o in history.of("ack", "ok")}
    ack_sent = {o.message_ids[0] for o in history.of("ack") if o.outcome != "fail"}
    for message_id, view in final.items():
        if view is None:  # no TTLs in these tests: a message never just goes
            problems.append(f"{message_id}: lost (enqueued, now found nowhere)")
            continue
        state = view.state
        if message_id in acked and state is not MessageState.SUCCEEDED:
            problems.append(f"{message_id}: acked, but ends {state}")
        if state is MessageState.SUCCEEDED and message_id not in ack_sent:
            problems.append(f"{message_id}: ends succeeded, but no ack of it may have applied")
    return problems
