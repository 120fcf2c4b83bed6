"""Counters and histograms that the workers and the relay add to and any API process reports.

The workers and the relay run in other processes, often on other machines, so
prometheus-client's multiprocess files cannot carry their figures, and a port per worker
process would leave the operator one scrape target per process. They add to Redis hashes
instead (one per family, `jobplatform:metrics:<name>`, HINCRBYFLOAT on one field per label
set and bucket) and the scrape reads the hashes back: one scrape sees every worker's timings,
and the figures survive any process's restart. Redis losing its data is a counter reset,
which Prometheus's `rate()` handles.

Each process adds to a local buffer and flushes it in one pipeline (after a job, a batch, a
relay round); a flush that finds Redis down keeps the figures for the next one, so a
publish failure counted during a Redis outage is reported once Redis is back.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString
from redis import Redis
from redis.exceptions import RedisError

from backend_app.core.redis import get_redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "jobplatform:metrics:"
# A process keeps at most this many distinct pending fields while Redis is away; past it,
# new figures are dropped (and logged once): the label sets are bounded, so this is a guard.
MAX_PENDING_FIELDS = 10_000
_SUM = "sum"
_COUNT = "count"
_INF = "+Inf"


@dataclass(frozen=True)
class SharedFamily:
    name: str
    documentation: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()  # empty: a counter

    @property
    def key(self) -> str:
        return KEY_PREFIX + self.name

    @property
    def is_histogram(self) -> bool:
        return bool(self.buckets)


# Seconds. Waiting for a worker is milliseconds when the queues keep up and minutes when
# they do not; runs go from a push (milliseconds) to a video transcode (minutes).
WAIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)

TASK_START_DELAY = SharedFamily(
    "jobplatform_task_start_delay_seconds",
    "Time from a task's commit (its record's creation) to the start of its first attempt.",
    ("backend", "queue", "task"),
    WAIT_BUCKETS,
)
TASK_RUN_DURATION = SharedFamily(
    "jobplatform_task_run_duration_seconds",
    "Run time of each attempt that ended (succeeded, failed, retrying or dead), by outcome.",
    ("backend", "queue", "task", "outcome"),
    RUN_BUCKETS,
)
OUTBOX_PUBLISH_DELAY = SharedFamily(
    "jobplatform_outbox_publish_delay_seconds",
    "Time from an outbox row's commit to the relay publishing it to its queue.",
    ("backend", "queue"),
    WAIT_BUCKETS,
)
OUTBOX_PUBLISH_FAILURES = SharedFamily(
    "jobplatform_outbox_publish_failures_total",
    "Publish attempts that failed, by reason: broker (Redis away; retried), unexpected (retried), "
    "permanent (the task failed).",
    ("backend", "queue", "reason"),
)
FAMILIES = (TASK_START_DELAY, TASK_RUN_DURATION, OUTBOX_PUBLISH_DELAY, OUTBOX_PUBLISH_FAILURES)


def _field(labels: Sequence[str], part: str) -> str:
    return json.dumps([*labels, part])


class SharedMetrics:
    """This process's figures not yet added to Redis. Thread-safe (Celery's threads, the
    relay's publisher thread)."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str], float] = defaultdict(float)
        self._lock = threading.Lock()
        self._dropping = False

    def inc(self, family: SharedFamily, labels: Sequence[str], amount: float = 1.0) -> None:
        assert not family.is_histogram, family.name
        assert len(labels) == len(family.labels), family.name
        self._add([(family.key, _field(labels, _COUNT), amount)])

    def observe(self, family: SharedFamily, labels: Sequence[str], value: float) -> None:
        assert family.is_histogram, family.name
        assert len(labels) == len(family.labels), family.name
        if math.isnan(value):
            return
        value = max(value, 0.0)  # two clocks a little apart must not make a negative wait
        bucket = next((floatToGoString(bound) for bound in family.buckets if value <= bound), _INF)
        self._add([(family.key, _field(labels, bucket), 1.0), (family.key, _field(labels, _SUM), value)])

    def _add(self, additions: Iterable[tuple[str, str, float]]) -> None:
        with self._lock:
            for key, field, amount in additions:
                if (key, field) not in self._pending and len(self._pending) >= MAX_PENDING_FIELDS:
                    if not self._dropping:
                        logger.warning("metrics: %d figures wait for Redis; dropping new ones", len(self._pending))
                        self._dropping = True
                    continue
                self._pending[(key, field)] += amount

    def flush(self, redis: Redis | None = None) -> bool:
        """Add the pending figures to Redis in one pipeline; False (figures kept) when Redis
        is away. Never raises: a metric must not fail a job or a publish."""
        with self._lock:
            pending, self._pending = self._pending, defaultdict(float)
        if not pending:
            return True
        try:
            with (redis or get_redis()).pipeline(transaction=False) as pipeline:
                for (key, field), amount in pending.items():
                    pipeline.hincrbyfloat(key, field, amount)
                pipeline.execute()
        except RedisError as error:
            logger.debug("metrics: %d figures kept for the next flush (Redis: %s)", len(pending), error)
            with self._lock:
                for (key, field), amount in pending.items():
                    self._pending[(key, field)] += amount
            return False
        with self._lock:
            self._dropping = False
        return True


_process_metrics = SharedMetrics()


def shared_metrics() -> SharedMetrics:
    """This process's buffer."""
    return _process_metrics


def read_families(redis: Redis) -> list[Metric]:
    """Every shared family as Prometheus families (blocking: one HGETALL per family)."""
    with redis.pipeline(transaction=False) as pipeline:
        for family in FAMILIES:
            pipeline.hgetall(family.key)
        hashes = pipeline.execute()
    return [_to_metric(family, stored) for family, stored in zip(FAMILIES, hashes, strict=True)]


def _to_metric(family: SharedFamily, stored: dict[bytes, bytes]) -> Metric:
    by_labels: dict[tuple[str, ...], dict[str, float]] = defaultdict(dict)
    for raw_field, raw_value in stored.items():
        *labels, part = json.loads(raw_field)
        by_labels[tuple(labels)][part] = float(raw_value)
    name = family.name.removesuffix("_total")
    if not family.is_histogram:
        counter = CounterMetricFamily(name, family.documentation, labels=family.labels)
        for labels, parts in sorted(by_labels.items()):
            counter.add_metric(labels, parts.get(_COUNT, 0.0))
        return counter
    histogram = HistogramMetricFamily(name, family.documentation, labels=family.labels)
    for labels, parts in sorted(by_labels.items()):
        cumulative, buckets = 0.0, []
        for bound in (*map(floatToGoString, family.buckets), _INF):
            cumulative += parts.get(bound, 0.0)
            buckets.append((bound, cumulative))
        histogram.add_metric(labels, buckets, sum_value=parts.get(_SUM, 0.0))
    return histogram
