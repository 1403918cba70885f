"""Prometheus metrics of a node, in its own registry.

The engine emits nothing (it is pure); these observe it from outside:

* read from the engine at scrape time — the replicated per-queue totals
  (``kokaq_messages_{enqueued,dequeued,acked,nacked,dead_lettered,expired}_total``),
  ``kokaq_queue_messages{state}``, ``kokaq_queue_oldest_ready_age_seconds``,
  ``kokaq_queue_paused``, ``kokaq_schedule_{fired_total,next_fire_timestamp_seconds,
  last_fire_failed}`` and
  ``kokaq_scheduler_share_ratio`` (achieved over configured share: one row per
  band with ``key=""``, and one per fairness key for the ten most served keys
  of each band, the rest summed under ``key="other"``);
* read from Raft at scrape time — ``kokaq_raft_{is_leader,term,commit_index,
  applied_index,log_entries}`` and the journal's
  ``kokaq_raft_journal_{appends,syncs,kept_on_resend,dropped_on_conflict}_total``;
* counted as they happen on this node — ``kokaq_lease_wait_seconds`` (from the
  moment a message became ready to its first lease, by queue and band),
  gRPC and HTTP requests and their latency, open worker streams and the jobs
  given back when one broke (``kokaq_worker_jobs_given_back_total``), and
  ``kokaq_gc_pause_seconds`` (each garbage collection, by generation: every
  thread stands still meanwhile; see ``gc_tuning``).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from kokaq.core import Engine, MessageView, QueueConfig
from kokaq.server.committer import Committer
from kokaq.server.gc_tuning import PAUSES, GcPauses

__all__ = ["NodeMetrics", "TOP_KEYS", "band_of"]

TOP_KEYS = 10  # fairness keys per band with their own share series
_TOTALS = ("enqueued", "dequeued", "acked", "nacked", "dead_lettered", "expired")
_STATES = ("ready", "delayed", "leased", "succeeded", "dead")
_WAIT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    900,
    3600,
)
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


def band_of(config: QueueConfig, priority: int) -> int:
    """The index of the band serving ``priority`` (0 with a single band)."""
    bands = config.scheduling.bands
    if len(bands) <= 1:
        return 0
    return max(0, bisect_right([b.min_priority for b in bands], priority) - 1)


class _EngineCollector(Collector):
    def __init__(
        self, engine: Callable[[], Engine], lock: Any, raft_status: Callable[[], dict[str, Any]]
    ) -> None:
        self._engine = engine
        self._lock = lock
        self._raft_status = raft_status

    def collect(self) -> Iterator[Metric]:
        labels = ["namespace", "queue"]
        totals = {
            name: CounterMetricFamily(
                f"kokaq_messages_{name}",
                f"Messages {name} (replicated, since the queue was made)",
                labels=labels,
            )
            for name in _TOTALS
        }
        depth = GaugeMetricFamily(
            "kokaq_queue_messages", "Messages held, by state", labels=[*labels, "state"]
        )
        oldest = GaugeMetricFamily(
            "kokaq_queue_oldest_ready_age_seconds", "Age of the oldest ready message", labels=labels
        )
        paused = GaugeMetricFamily(
            "kokaq_queue_paused", "1 while the queue dispatches nothing (paused)", labels=labels
        )
        shares = GaugeMetricFamily(
            "kokaq_scheduler_share_ratio",
            "Achieved over configured share of dispatched cost (key='' for the band as a whole)",
            labels=[*labels, "band", "key"],
        )
        fired = CounterMetricFamily(
            "kokaq_schedule_fired",
            "Fires (and triggers) of a schedule that enqueued its job",
            labels=["namespace", "schedule"],
        )
        next_fire = GaugeMetricFamily(
            "kokaq_schedule_next_fire_timestamp_seconds",
            "When a schedule fires next (alert when it stays in the past)",
            labels=["namespace", "schedule"],
        )
        failing = GaugeMetricFamily(
            "kokaq_schedule_last_fire_failed",
            "1 when a schedule's last fire enqueued nothing (its queue refused the job)",
            labels=["namespace", "schedule"],
        )
        with self._lock:
            engine = self._engine()
            for ns in engine.list_namespaces():
                for schedule in engine.list_schedules(ns.name):
                    at = [ns.name, schedule.name]
                    fired.add_metric(at, schedule.fired)
                    next_fire.add_metric(at, schedule.next_fire_at / 1000)
                    failing.add_metric(at, int(schedule.last_error is not None))
                for info in engine.list_queues(ns.name):
                    at = [ns.name, info.name]
                    stats = engine.stats(ns.name, info.name)
                    for name in _TOTALS:
                        totals[name].add_metric(at, stats.totals.get(name, 0))
                    for state in _STATES:
                        depth.add_metric([*at, state], getattr(stats, state))
                    if stats.oldest_ready_age_ms is not None:
                        oldest.add_metric(at, stats.oldest_ready_age_ms / 1000)
                    paused.add_metric(at, int(stats.paused))
                    _add_shares(
                        shares, at, engine.scheduling_stats(ns.name, info.name, key_limit=1000)
                    )
        yield from totals.values()
        yield from (depth, oldest, paused, shares, fired, next_fire, failing)
        yield from _raft_metrics(self._raft_status())


def _add_shares(family: GaugeMetricFamily, at: list[str], stats: Any) -> None:
    for band in stats.bands:
        if band.configured_share > 0 and band.dispatched:
            family.add_metric(
                [*at, str(band.band), ""], band.achieved_share / band.configured_share
            )
    by_band: dict[int, list[Any]] = {}
    for key in stats.keys:
        by_band.setdefault(key.band, []).append(key)
    for band, keys in by_band.items():
        cost = sum(k.cost for k in keys)
        weight = sum(k.weight for k in keys)
        if not cost or not weight:
            continue
        keys.sort(key=lambda k: k.cost, reverse=True)
        top, rest = keys[:TOP_KEYS], keys[TOP_KEYS:]
        rows = [(k.key or "", k.cost, k.weight) for k in top]
        if rest:
            rows.append(("other", sum(k.cost for k in rest), sum(k.weight for k in rest)))
        for name, key_cost, key_weight in rows:
            family.add_metric(
                [*at, str(band), name or "(none)"], (key_cost / cost) / (key_weight / weight)
            )


def _raft_metrics(status: dict[str, Any]) -> Iterator[Metric]:
    leader = status.get("leader")
    rows = (
        (
            "kokaq_raft_is_leader",
            "1 on the leader",
            int(leader is not None and leader == status.get("self")),
        ),
        ("kokaq_raft_term", "The current Raft term", status.get("raft_term", 0)),
        (
            "kokaq_raft_commit_index",
            "The highest log index known committed",
            status.get("commit_idx", 0),
        ),
        (
            "kokaq_raft_applied_index",
            "The highest log index applied to the engine",
            status.get("last_applied", 0),
        ),
        (
            "kokaq_raft_log_entries",
            "Entries in the Raft log (since the last snapshot)",
            status.get("log_len", 0),
        ),
        (
            "kokaq_raft_log_format",
            "The log format the members agreed on (writes needing a newer one are held to it)",
            status.get("log_format", 0),
        ),
    )
    for name, text, value in rows:
        yield GaugeMetricFamily(name, text, value=value)
    counters = (
        ("appends", "Log entries written to this node's journal"),
        ("syncs", "fdatasync calls that made them durable (entries written together share one)"),
        (
            "kept_on_resend",
            "Log entries PySyncObj deleted without a term conflict (the leader resent "
            "them) that the journal kept",
        ),
        (
            "dropped_on_conflict",
            "Log entries dropped because the leader's entry at their index had another term",
        ),
    )
    for name, text in counters:
        yield CounterMetricFamily(
            f"kokaq_raft_journal_{name}", text, value=status.get(f"journal_{name}", 0)
        )


class _CommitCollector:
    """How well group commit packs writes: operations per Raft entry."""

    def __init__(self, committer: Committer) -> None:
        self._committer = committer

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "kokaq_commit_batches",
            "Raft entries the leader proposed, each carrying a batch of writes",
            value=self._committer.batches,
        )
        operations = CounterMetricFamily(
            "kokaq_commit_operations",
            "Writes the leader proposed through the Raft log, by operation",
            labels=["operation"],
        )
        for name, count in sorted(self._committer.proposed.items()):
            operations.add_metric([name], count)
        yield operations


class _GcCollector:
    """The collector's pauses (recorded once ``tune_garbage_collection`` ran)."""

    def __init__(self, pauses: GcPauses) -> None:
        self._pauses = pauses

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(
            "kokaq_gc_pause_seconds",
            "Garbage collections and how long each stopped the node, by generation",
            labels=["generation"],
        )
        for generation in range(3):
            family.add_metric(
                [str(generation)],
                buckets=self._pauses.cumulative(generation),
                sum_value=self._pauses.sums[generation],
            )
        yield family


class _WorkersCollector:
    """What the lease streams did that the engine does not count."""

    def __init__(self, given_back: Callable[[], int]) -> None:
        self._given_back = given_back

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "kokaq_worker_jobs_given_back",
            "Jobs leased for a worker stream that broke before they were sent, released at once",
            value=self._given_back(),
        )


class NodeMetrics:
    def __init__(
        self,
        engine: Callable[[], Engine],
        lock: Any,
        raft_status: Callable[[], dict[str, Any]],
        committer: Committer,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._engine = engine
        self._lock = lock
        self.registry.register(_EngineCollector(engine, lock, raft_status))
        self.registry.register(_CommitCollector(committer))
        self.registry.register(_GcCollector(PAUSES))
        self.lease_wait = Histogram(
            "kokaq_lease_wait_seconds",
            "From ready (enqueue, or the end of a delay) to the first lease",
            ["namespace", "queue", "band"],
            buckets=_WAIT_BUCKETS,
            registry=self.registry,
        )
        self.grpc_requests = Counter(
            "kokaq_grpc_requests", "gRPC calls answered", ["method", "code"], registry=self.registry
        )
        self.grpc_latency = Histogram(
            "kokaq_grpc_request_duration_seconds", "gRPC call latency", ["method"],
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.http_requests = Counter(
            "kokaq_http_requests", "HTTP requests answered", ["method", "route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.http_latency = Histogram(
            "kokaq_http_request_duration_seconds", "HTTP request latency", ["route"],
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.worker_streams = Gauge(
            "kokaq_worker_streams", "Open worker lease streams", registry=self.registry
        )

    def watch_workers(self, streams: Callable[[], int], given_back: Callable[[], int]) -> None:
        """Read the open lease streams and the jobs they gave back at scrape time."""
        self.worker_streams.set_function(streams)
        self.registry.register(_WorkersCollector(given_back))

    def observe_grpc(self, method: str, code: str, seconds: float) -> None:
        self.grpc_requests.labels(method, code).inc()
        self.grpc_latency.labels(method).observe(seconds)

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_latency.labels(route).observe(seconds)

    def leased(self, views: list[MessageView]) -> None:
        """Record the wait of each message leased for the first time. (A
        Dequeue's jobs share a few label sets: each is looked up once.)"""
        configs: dict[tuple[str, str], QueueConfig] = {}
        histograms: dict[tuple[str, str, int], Any] = {}
        for view in views:
            if view.deliveries != 1:
                continue
            where = (view.namespace, view.queue)
            config = configs.get(where)
            if config is None:
                with self._lock:
                    config = configs[where] = self._engine().get_queue(*where).config
            labels = (*where, band_of(config, view.priority))
            histogram = histograms.get(labels)
            if histogram is None:
                histogram = histograms[labels] = self.lease_wait.labels(
                    view.namespace, view.queue, str(labels[2])
                )
            wait_ms = view.updated_at - view.visible_at  # updated: when it was leased
            histogram.observe(max(0.0, wait_ms / 1000))
