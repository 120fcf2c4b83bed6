"""The read router's state as metrics, with no change to its hot path.

Two kinds of figures, read from the router's existing state:

- What each process did (routing counters, bans, its pools, its primary-fallback slots):
  copied into the multiprocess files by `RouterPublisher`, every few seconds in each API
  process and at scrape time in the one answering, so the scrape sums every process.
- What each node is (up, in rotation, lag): the same fact in every process, so the scrape
  reports the answering process's monitor (`node_families`).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass
from functools import cache

from prometheus_client import Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from backend_app.db.router import DatabaseRouter
from backend_app.metrics.multiprocess import metrics_directory

logger = logging.getLogger(__name__)

# How stale another process's figures may be in a scrape (Prometheus scrapes every 15 s or more).
PUBLISH_INTERVAL_SECONDS = 5.0

# RoutingCounters field -> (destination, reason) of jobplatform_db_reads_total.
READ_PLACEMENTS = {
    "replica": ("replica", "replica_in_rotation"),
    "primary_because_lag": ("primary", "replicas_behind_client_position"),
    "primary_because_down": ("primary", "no_replica_in_rotation"),
    "primary_no_replica": ("primary", "no_replica_configured"),
}


@dataclass(frozen=True)
class RouterMetrics:
    reads: Counter
    failovers: Counter
    stale_reads: Counter
    fallback_rejected: Counter
    positions_ignored: Counter
    bans: Counter
    pool_size: Gauge
    pool_checked_out: Gauge
    pool_overflow: Gauge
    fallback_in_use: Gauge
    fallback_waiting: Gauge
    fallback_limit: Gauge


@cache
def router_metrics() -> RouterMetrics:
    metrics_directory()
    # Pools and fallback slots belong to a process: summed over the live ones.
    live_sum = {"registry": None, "multiprocess_mode": "livesum"}
    return RouterMetrics(
        reads=Counter(
            "jobplatform_db_reads_total",
            "Read sessions placed by the router, by destination (replica, primary) and reason.",
            ("destination", "reason"),
            registry=None,
        ),
        failovers=Counter(
            "jobplatform_db_read_failovers_total",
            "Read statements re-run on another node after their connection failed.",
            registry=None,
        ),
        stale_reads=Counter(
            "jobplatform_db_stale_reads_total",
            "Reads that could not keep read-your-writes because the primary was unreachable.",
            registry=None,
        ),
        fallback_rejected=Counter(
            "jobplatform_db_primary_fallback_rejected_total",
            "Reads refused with 503: no replica in rotation and the primary at its fallback limit.",
            registry=None,
        ),
        positions_ignored=Counter(
            "jobplatform_db_positions_ignored_total",
            "Client WAL positions ignored as implausible (past anything the primary wrote).",
            registry=None,
        ),
        bans=Counter(
            "jobplatform_db_replica_bans_total",
            "Times a replica left the rotation (failed check, lag, or a request could not use it).",
            ("node",),
            registry=None,
        ),
        pool_size=Gauge("jobplatform_db_pool_size", "Configured connections of each pool.", ("pool",), **live_sum),
        pool_checked_out=Gauge(
            "jobplatform_db_pool_checked_out", "Connections of each pool in use now.", ("pool",), **live_sum
        ),
        pool_overflow=Gauge(
            "jobplatform_db_pool_overflow", "Connections open beyond each pool's size.", ("pool",), **live_sum
        ),
        fallback_in_use=Gauge(
            "jobplatform_db_primary_fallback_reads_in_use",
            "Reads on the primary taking a fallback slot now (no replica could serve them).",
            **live_sum,
        ),
        fallback_waiting=Gauge(
            "jobplatform_db_primary_fallback_reads_waiting", "Reads waiting for a fallback slot now.", **live_sum
        ),
        fallback_limit=Gauge(
            "jobplatform_db_primary_fallback_reads_limit",
            "Fallback slots (DB_PRIMARY_FALLBACK_MAX_READS per process).",
            **live_sum,
        ),
    )


def publisher_for(router: DatabaseRouter) -> RouterPublisher:
    """The one publisher of this router: it remembers what it already added to the counters."""
    publisher = _publishers.get(router)
    if publisher is None:
        publisher = _publishers[router] = RouterPublisher(router)
    return publisher


class RouterPublisher:
    """Copies one router's counters (as increments since the last copy) and gauges into this
    process's metrics files."""

    def __init__(self, router: DatabaseRouter) -> None:
        self.router = router
        self.metrics = router_metrics()
        self._published: dict[str, int] = {}

    def publish(self) -> None:
        router, metrics = self.router, self.metrics
        counters = router.counters.as_dict()
        for field, (destination, reason) in READ_PLACEMENTS.items():
            self._add(metrics.reads.labels(destination, reason), field, counters[field])
        self._add(metrics.failovers, "failovers", counters["failovers"])
        self._add(metrics.stale_reads, "stale_because_primary_down", counters["stale_because_primary_down"])
        self._add(metrics.fallback_rejected, "primary_reads_rejected", counters["primary_reads_rejected"])
        self._add(metrics.positions_ignored, "positions_ignored", counters["positions_ignored"])
        for node in router.replicas:
            self._add(metrics.bans.labels(node.name), f"bans:{node.name}", node.bans)
        pools = router.pool_status()
        for pool, status in (
            ("primary", pools["primary"]),
            ("primary_read_only", pools["primary_read_only"]),
            *pools["replicas"].items(),
        ):
            metrics.pool_size.labels(pool).set(status["size"])
            metrics.pool_checked_out.labels(pool).set(status["in_use"])
            metrics.pool_overflow.labels(pool).set(status["overflow"])
        fallback = router.primary_fallback_status()
        metrics.fallback_in_use.set(fallback["in_use"])
        metrics.fallback_waiting.set(fallback["waiting"])
        metrics.fallback_limit.set(fallback["limit"])

    def _add(self, counter: Counter, key: str, total: int) -> None:
        increase = total - self._published.get(key, 0)
        if increase > 0:
            counter.inc(increase)
        self._published[key] = total

    async def publish_periodically(self) -> None:
        """The API lifespan's background task: this process's figures stay fresh in the files
        whichever process answers the scrape."""
        while True:
            try:
                self.publish()
            except Exception:
                logger.exception("could not publish the database router's metrics")
            await asyncio.sleep(PUBLISH_INTERVAL_SECONDS)


_publishers: weakref.WeakKeyDictionary[DatabaseRouter, RouterPublisher] = weakref.WeakKeyDictionary()


def node_families(router: DatabaseRouter) -> list[Metric]:
    """Each node as this process's monitor last saw it; unknown figures are left out."""
    up = GaugeMetricFamily(
        "jobplatform_db_node_up", "1 when the node answered its last health check.", labels=("node",)
    )
    in_rotation = GaugeMetricFamily(
        "jobplatform_db_node_in_rotation", "1 while a replica takes reads, 0 while it is out.", labels=("node",)
    )
    lag_bytes = GaugeMetricFamily(
        "jobplatform_db_replica_lag_bytes", "WAL a replica has not replayed yet.", labels=("node",)
    )
    lag_seconds = GaugeMetricFamily(
        "jobplatform_db_replica_lag_seconds",
        "How long ago the primary was where a replica is now (0 when caught up).",
        labels=("node",),
    )
    for node in (router.primary, *router.replicas):
        if node.reachable is not None:
            up.add_metric((node.name,), float(node.reachable))
    for node in router.replicas:
        in_rotation.add_metric((node.name,), float(node.in_rotation))
        if node.lag_bytes is not None:
            lag_bytes.add_metric((node.name,), node.lag_bytes)
        if node.lag_seconds is not None:
            lag_seconds.add_metric((node.name,), node.lag_seconds)
    return [up, in_rotation, lag_bytes, lag_seconds]
