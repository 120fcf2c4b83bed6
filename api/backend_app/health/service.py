"""What /health/queues reports: Redis, queues, workers, the outbox backlog and canaries."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from kombu.exceptions import KombuError
from redis import Redis
from redis.exceptions import RedisError

from backend_app.core.config import Settings, mask_url
from backend_app.db.errors import is_connection_error
from backend_app.db.lifecycle import get_database_router
from backend_app.health import tasks as health_tasks
from backend_app.health.canary import check_canary
from backend_app.outbox import repository as outbox_repository
from backend_app.tasks import reconcile
from backend_app.tasks import repository as task_repository
from backend_app.tasks.models import TaskStatus
from backend_app.worker import rq_app
from backend_app.worker.celery_app import celery_app
from backend_app.worker.queues import CELERY_QUEUES, RQ_QUEUES

logger = logging.getLogger(__name__)

CELERY_PING_TIMEOUT = 0.5


def _queue_figures(redis: Redis, settings: Settings) -> tuple[dict[str, dict[str, Any]], list[str], dict[str, Any]]:
    """Queue depths and canaries, Celery workers answering a ping, RQ workers alive."""
    # A connection of its own, not a pooled one that may predate a Redis restart.
    with celery_app.connection_for_write() as connection:
        replies = celery_app.control.ping(timeout=CELERY_PING_TIMEOUT, connection=connection) or []
        celery_workers = sorted(name for reply in replies for name in reply)
        rq_health = rq_app.check_rq_health()
        queues: dict[str, dict[str, Any]] = {}
        for queue in CELERY_QUEUES:
            queues[queue] = {
                "backend": "celery",
                "depth": int(redis.llen(queue)),
                "canary": check_canary(
                    redis,
                    "celery",
                    queue,
                    lambda canary_id, q=queue: celery_app.send_task(
                        health_tasks.canary.name,
                        args=[canary_id],
                        queue=q,
                        retry=False,
                        expires=settings.canary_timeout_seconds,
                        connection=connection,
                    ),
                    timeout=settings.canary_timeout_seconds,
                ),
            }
        for queue in RQ_QUEUES:
            queues[queue] = {
                "backend": "rq",
                "depth": rq_health["queues"][queue]["depth"],
                "workers": rq_health["queues"][queue]["workers"],
                "canary": check_canary(
                    redis,
                    "rq",
                    queue,
                    lambda canary_id, q=queue: rq_app.get_queue(q).enqueue_call(
                        health_tasks.canary_job.name, args=(canary_id,), result_ttl=60, ttl=600
                    ),
                    timeout=settings.canary_timeout_seconds,
                ),
            }
    return queues, celery_workers, rq_health


def broker_report(settings: Settings) -> dict[str, Any]:
    """Everything that needs Redis or the Celery control bus (blocking; run in a thread)."""
    redis = rq_app.get_redis()
    report: dict[str, Any] = {"redis": {"url": mask_url(settings.redis_url)}}
    try:
        started = time.perf_counter()
        redis.ping()
        report["redis"].update(reachable=True, round_trip_ms=round((time.perf_counter() - started) * 1000, 3))
    except RedisError as error:
        report["redis"].update(reachable=False, error=type(error).__name__)
        return report

    # Redis answered its ping. A failure of what follows is retried once on fresh
    # connections: after Redis restarts, each stale pooled connection fails one command, and
    # that must not be reported as Redis being down while it is up.
    for attempt in (1, 2):
        try:
            queues, celery_workers, rq_health = _queue_figures(redis, settings)
            break
        except (RedisError, KombuError, OSError, KeyError) as error:
            # KeyError: check_rq_health lost Redis half-way and returned no queue figures.
            if attempt == 2:
                report["redis"].update(reachable=False, error=type(error).__name__)
                return report
    try:
        # A scheduled retry only moves when some process holds its queue's scheduler lock.
        schedulers = rq_app.scheduler_lock_holders(redis)
        overdue = rq_app.overdue_scheduled(redis, settings.scheduled_overdue_grace_seconds)
    except RedisError as error:
        report["redis"].update(reachable=False, error=type(error).__name__)
        return report
    for queue in RQ_QUEUES:
        queues[queue]["scheduler"] = schedulers.get(queue)
        queues[queue]["overdue_scheduled"] = overdue.get(queue, 0)
    report["workers"] = {
        "celery": {"alive": len(celery_workers), "names": celery_workers},
        "rq": {"registered": rq_health["workers"]},
    }
    report["queues"] = queues
    return report


async def _lost_messages_report(settings: Settings) -> dict[str, int] | None:
    """Per queue, tasks the records say are waiting or running whose message Redis does not
    hold (the relay publishes them again); None when either side cannot be read."""
    try:
        async with get_database_router().write_session() as session:
            found = await reconcile.candidates(session, settings)
        missing = await asyncio.to_thread(reconcile.lost_messages, rq_app.get_redis(), found, settings) if found else []
    except RedisError:
        return None
    except Exception as error:
        # A report, not a gate: whatever went wrong here must not turn the endpoint into a 500.
        if not is_connection_error(error):
            logger.warning("could not compare task records with Redis", exc_info=error)
        return None
    counts: dict[str, int] = {}
    for entry in missing:
        counts[entry.candidate.queue] = counts.get(entry.candidate.queue, 0) + 1
    return counts


async def _database_report() -> dict[str, Any]:
    """Per-queue task counts and the outbox backlog, read from the primary (the source of truth)."""
    now = datetime.now(UTC)
    try:
        async with get_database_router().write_session() as session:
            backlog, oldest_pending = await outbox_repository.backlog(session)
            per_queue = {}
            for queue in (*CELERY_QUEUES, *RQ_QUEUES):
                counts = await task_repository.status_counts(session, queue)
                oldest = await task_repository.oldest_waiting_since(session, queue)
                per_queue[queue] = {
                    "oldest_waiting_seconds": round((now - oldest).total_seconds(), 3) if oldest else None,
                    "started": counts.get(TaskStatus.started, 0),
                    "retrying": counts.get(TaskStatus.retrying, 0),
                    "failed": counts.get(TaskStatus.failed, 0),
                    "dead": counts.get(TaskStatus.dead, 0),
                }
    except Exception as error:
        if not is_connection_error(error):
            raise
        return {"outbox": {"reachable": False, "error": type(error).__name__}, "queues": {}}
    return {
        "outbox": {
            "reachable": True,
            "backlog": backlog,
            "oldest_pending_seconds": round((now - oldest_pending).total_seconds(), 3) if oldest_pending else None,
        },
        "queues": per_queue,
    }


async def queue_health(settings: Settings) -> dict[str, Any]:
    broker, database, lost = await asyncio.gather(
        asyncio.to_thread(broker_report, settings), _database_report(), _lost_messages_report(settings)
    )
    queues = broker.get("queues", {})
    for name, figures in database["queues"].items():
        queues.setdefault(name, {}).update(figures)
    if lost is not None:
        for name in queues:
            queues[name]["missing_from_redis"] = lost.get(name, 0)

    redis_up = broker["redis"]["reachable"]
    outbox_up = database["outbox"]["reachable"]
    problems = []
    if not redis_up:
        problems.append("redis unreachable: tasks wait in the outbox")
    if not outbox_up:
        problems.append("primary database unreachable: the outbox cannot record tasks")
    workers = broker.get("workers", {})
    if redis_up and not workers.get("celery", {}).get("alive"):
        problems.append("no celery worker answered")
    if redis_up and not workers.get("rq", {}).get("registered"):
        problems.append("no rq worker registered")
    for name, figures in queues.items():
        if figures.get("canary", {}).get("consuming") is False:
            problems.append(f"queue {name}: canary not consumed within {settings.canary_timeout_seconds:.0f}s")
        if redis_up and "scheduler" in figures and figures["scheduler"] is None:
            problems.append(f"queue {name}: no process holds its RQ scheduler lock (scheduled retries do not move)")
        if figures.get("overdue_scheduled"):
            problems.append(f"queue {name}: {figures['overdue_scheduled']} scheduled retries overdue")
        if figures.get("missing_from_redis"):
            problems.append(
                f"queue {name}: {figures['missing_from_redis']} task(s) recorded as waiting or running are missing"
                " from Redis (being published again)"
            )

    if not redis_up and not outbox_up:
        status = "unhealthy"  # nothing can be queued at all
    elif problems:
        status = "degraded"
    else:
        status = "healthy"
    return {
        "status": status,
        "problems": problems,
        "redis": broker["redis"],
        "workers": workers,
        "queues": queues,
        "outbox": database["outbox"],
    }
