"""One scrape: every process's counters from the multiprocess files, plus what is read now.

Read at scrape time: the database nodes as this process's monitor sees them; task records
and the outbox backlog from the primary (aggregates, so one scrape of any API process shows
every worker's work without scraping the workers); queues, workers, canaries and Redis from
the same figures /health/queues uses. A source that is down leaves its families out and says
so in `jobplatform_scrape_source_up`; the scrape itself still answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from redis import Redis
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.utils import now

from backend_app.core.config import Settings
from backend_app.db.errors import is_connection_error
from backend_app.db.lifecycle import get_database_router
from backend_app.health.service import broker_report
from backend_app.metrics import repository
from backend_app.metrics.database import node_families, publisher_for
from backend_app.metrics.http import http_figures
from backend_app.metrics.multiprocess import forget_dead_processes, metrics_directory
from backend_app.metrics.repository import TaskTally
from backend_app.metrics.shared import read_families
from backend_app.outbox import repository as outbox_repository
from backend_app.worker import rq_app
from backend_app.worker.queues import CELERY_QUEUES, RQ_QUEUES

logger = logging.getLogger(__name__)

QUEUE_LABELS = ("backend", "queue")
TASK_LABELS = ("backend", "queue", "task", "status")


class _Families:
    """A collector handing over families already built (the scrape-time ones)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


async def scrape(settings: Settings) -> bytes:
    """The whole exposition, in Prometheus text format 0.0.4."""
    router = get_database_router()
    publisher_for(router).publish()  # this process's router figures, fresh
    http_figures().flush()  # and its requests so far, this scrape in flight
    directory = metrics_directory()
    forget_dead_processes(directory)

    broker, database = await asyncio.gather(asyncio.to_thread(_broker_figures, settings), _database_figures())
    celery_heads = broker.get("celery_heads", {})
    ages = await _celery_head_ages(celery_heads) if celery_heads and database is not None else {}

    families = node_families(router)
    families.append(_sources_up(database=database is not None, redis=broker["redis"]["reachable"]))
    if database is not None:
        families.extend(_database_families(*database))
    if broker["redis"]["reachable"]:
        families.extend(_broker_families(broker, ages))

    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=str(directory))
    registry.register(_Families(families))
    return generate_latest(registry)


# -- the primary ---------------------------------------------------------------------------


async def _database_figures() -> tuple[list[TaskTally], int, float] | None:
    """Task tallies, the outbox backlog and its oldest message's age; None when unreadable."""
    try:
        async with get_database_router().write_session() as session:
            tallies = await repository.task_tallies(session)
            backlog, oldest = await outbox_repository.backlog(session)
        oldest_age = max((datetime.now(UTC) - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
    except Exception as error:
        # A scrape reports what it can: the primary being away is a figure, not a 500.
        if not is_connection_error(error):
            logger.warning("metrics: could not read task records and the outbox", exc_info=error)
        return None
    return tallies, backlog, oldest_age


async def _celery_head_ages(heads: dict[str, str]) -> dict[str, float]:
    """Per Celery queue, how long its oldest message has been queued (from its task record)."""
    try:
        async with get_database_router().write_session() as session:
            since = await repository.queued_since_seconds(session, list(heads.values()))
    except Exception as error:
        if not is_connection_error(error):
            logger.warning("metrics: could not read when the oldest Celery messages were queued", exc_info=error)
        return {}
    return {queue: since[task_id] for queue, task_id in heads.items() if task_id in since}


def _database_families(tallies: list[TaskTally], backlog: int, oldest_age: float) -> list[Metric]:
    records = GaugeMetricFamily(
        "jobplatform_task_records",
        "Background tasks by backend, queue, task and status, from the task records (every worker's work).",
        labels=TASK_LABELS,
    )
    attempts = GaugeMetricFamily(
        "jobplatform_task_record_attempts",
        "Attempts made by those tasks (started runs, retries included), from the task records.",
        labels=TASK_LABELS,
    )
    for tally in tallies:
        labels = (tally.backend, tally.queue, tally.task, tally.status)
        records.add_metric(labels, tally.records)
        attempts.add_metric(labels, tally.attempts)
    return [
        records,
        attempts,
        GaugeMetricFamily(
            "jobplatform_outbox_backlog_messages", "Outbox messages not yet published to a queue.", value=backlog
        ),
        GaugeMetricFamily(
            "jobplatform_outbox_oldest_unpublished_age_seconds",
            "Age of the oldest unpublished outbox message (0 when none waits).",
            value=oldest_age,
        ),
    ]


# -- Redis: queues, workers, canaries -------------------------------------------------------


def _broker_figures(settings: Settings) -> dict[str, Any]:
    """/health/queues' broker report, plus each queue's oldest message and the workers' and
    relay's shared figures (blocking; a thread)."""
    report = broker_report(settings)
    if report["redis"]["reachable"] and "queues" in report:
        try:
            report["celery_heads"], report["rq_oldest_ages"] = _oldest_messages(rq_app.get_redis())
            report["shared"] = read_families(rq_app.get_redis())
        except (RedisError, ValueError, KeyError) as error:
            logger.info(
                "metrics: could not read the oldest queued messages or the shared figures (%s)", type(error).__name__
            )
    return report


def _oldest_messages(redis: Redis) -> tuple[dict[str, str], dict[str, float]]:
    """The task id of each Celery queue's oldest message (kombu pushes on the left, workers
    take from the right), and the age of each RQ queue's oldest job (0 when it is empty)."""
    celery_heads = {}
    for queue in CELERY_QUEUES:
        message = redis.lindex(queue, -1)
        if message is not None:
            task_id = json.loads(message).get("headers", {}).get("id")
            if task_id:
                celery_heads[queue] = task_id
    rq_ages = {}
    for queue in RQ_QUEUES:
        job_ids = rq_app.get_queue(queue).get_job_ids(0, 1)
        if not job_ids:
            rq_ages[queue] = 0.0
            continue
        try:
            enqueued_at = Job.fetch(job_ids[0], connection=redis).enqueued_at
        except NoSuchJobError:
            continue  # taken or deleted just now: unknown this time
        if enqueued_at is not None:
            rq_ages[queue] = max((now() - enqueued_at).total_seconds(), 0.0)
    return celery_heads, rq_ages


def _broker_families(broker: dict[str, Any], celery_ages: dict[str, float]) -> list[Metric]:
    families = [
        GaugeMetricFamily(
            "jobplatform_redis_round_trip_seconds",
            "Time of one PING to Redis during this scrape.",
            value=broker["redis"]["round_trip_ms"] / 1000,
        )
    ]
    queues = broker.get("queues")
    if not queues:
        return families  # Redis answered its ping, then failed: only the ping is known
    depth = GaugeMetricFamily("jobplatform_queue_depth", "Messages waiting in each queue.", labels=QUEUE_LABELS)
    oldest = GaugeMetricFamily(
        "jobplatform_queue_oldest_message_age_seconds",
        "How long the oldest waiting message of each queue has waited (0 when the queue is empty).",
        labels=QUEUE_LABELS,
    )
    workers = GaugeMetricFamily("jobplatform_queue_workers", "Live workers consuming each queue.", labels=QUEUE_LABELS)
    consuming = GaugeMetricFamily(
        "jobplatform_queue_canary_consuming",
        "1 when the queue's last canary task came back in time, 0 when it is overdue.",
        labels=QUEUE_LABELS,
    )
    canary_round_trip = GaugeMetricFamily(
        "jobplatform_queue_canary_round_trip_seconds",
        "Time from sending the queue's last canary task to a worker running it.",
        labels=QUEUE_LABELS,
    )
    celery_workers = broker["workers"]["celery"]["alive"]
    rq_ages = broker.get("rq_oldest_ages", {})
    for queue, figures in queues.items():
        backend = figures["backend"]
        labels = (backend, queue)
        depth.add_metric(labels, figures["depth"])
        # Every Celery worker consumes every Celery queue (the Procfile's -Q lists them all).
        workers.add_metric(labels, figures["workers"] if backend == "rq" else celery_workers)
        age = rq_ages.get(queue) if backend == "rq" else _celery_age(queue, figures["depth"], celery_ages)
        if age is not None:
            oldest.add_metric(labels, age)
        canary = figures["canary"]
        if canary["consuming"] is not None:
            consuming.add_metric(labels, float(canary["consuming"]))
        if canary["last_round_trip_ms"] is not None:
            canary_round_trip.add_metric(labels, canary["last_round_trip_ms"] / 1000)
    return [*families, depth, oldest, workers, consuming, canary_round_trip, *broker.get("shared", [])]


def _celery_age(queue: str, depth: int, ages: dict[str, float]) -> float | None:
    # A canary at the head has no task record: the age is then unknown this time.
    return 0.0 if depth == 0 else ages.get(queue)


def _sources_up(*, database: bool, redis: bool) -> Metric:
    up = GaugeMetricFamily(
        "jobplatform_scrape_source_up",
        "1 when this scrape could read the source; 0 leaves that source's families out.",
        labels=("source",),
    )
    up.add_metric(("database",), float(database))
    up.add_metric(("redis",), float(redis))
    return up
