"""RQ queues for notifications, analytics and video processing.

    rq worker notifications analytics video_processing --url redis://localhost:6379/0
    rq worker notifications analytics video_processing --url redis://localhost:6379/0 --with-scheduler

No Redis connection is made at import time: the connection object is created lazily and
connects on first use, so importing this module works while Redis is down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Callback, Queue, Retry
from rq.defaults import DEFAULT_WORKER_TTL
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.scheduler import RQScheduler
from rq.utils import now
from rq.worker import Worker

from backend_app.core.config import get_settings, mask_url
from backend_app.core.redis import get_redis
from backend_app.tasks.models import TaskBackend
from backend_app.worker.queues import (  # noqa: F401
    ANALYTICS_QUEUE,
    NOTIFICATIONS_QUEUE,
    QUEUE_CONFIG,
    RQ_QUEUES,
    VIDEO_QUEUE,
    QueueSettings,
)

if TYPE_CHECKING:
    from backend_app.worker.registry import TaskCall

logger = logging.getLogger(__name__)

# Our worker classes record with each heartbeat how long it holds (see `live_workers`).
HEARTBEAT_TTL_FIELD = "heartbeat_ttl"

# Failures are recorded on the task record; this runs in the worker for every failure path
# (an exception, a timeout, a killed work horse, an abandoned job).
FAILURE_CALLBACK = "backend_app.worker.tracking.rq_job_failed"


def get_queue(name: str) -> Queue:
    if name not in QUEUE_CONFIG:
        raise KeyError(f"unknown RQ queue {name!r}; known: {', '.join(RQ_QUEUES)}")
    return Queue(name, connection=get_redis(), default_timeout=QUEUE_CONFIG[name].job_timeout)


class _LazyQueue:
    """`notification_queue.enqueue(...)` works like a Queue, built on first use."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(get_queue(self.name), attribute)


notification_queue: Queue = _LazyQueue(NOTIFICATIONS_QUEUE)  # type: ignore[assignment]
analytics_queue: Queue = _LazyQueue(ANALYTICS_QUEUE)  # type: ignore[assignment]
video_queue: Queue = _LazyQueue(VIDEO_QUEUE)  # type: ignore[assignment]


def publish(
    queue_name: str,
    func: str | Callable[..., Any],
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    job_id: str | None = None,
    meta: dict[str, Any] | None = None,
) -> Job:
    """Enqueue with the queue's timeout, TTLs and retries. Raises on a Redis error.

    With a `job_id`, a job of that id that is still waiting or running is not enqueued again
    (DuplicateJobError): the relay may publish a message twice if it dies at the wrong moment.
    """
    config = QUEUE_CONFIG[queue_name]
    if job_id is not None:
        _forget_finished_job(job_id)
    return get_queue(queue_name).enqueue_call(
        func=func,
        args=tuple(args),
        kwargs=kwargs or {},
        job_id=job_id,
        unique=job_id is not None,
        timeout=config.job_timeout,
        result_ttl=config.result_ttl,
        failure_ttl=config.failure_ttl,
        retry=Retry(max=len(config.retry_intervals), interval=list(config.retry_intervals))
        if config.retry_intervals
        else None,
        on_failure=Callback(FAILURE_CALLBACK),
        meta=meta,
    )


def publish_call(call: TaskCall, *, job_id: str | None = None) -> Job:
    """Enqueue a declared RQ task now, outside the outbox (best-effort work such as the
    analytics flush trigger). Raises on a Redis error."""
    if call.task.backend is not TaskBackend.rq:
        raise ValueError(f"{call.task.name} is not an RQ task")
    return publish(call.task.queue, call.task.name, call.args, call.kwargs, job_id=job_id)


def enqueue_job(queue_name: str, func: str | Callable[..., Any], *args: Any, **kwargs: Any) -> Job | None:
    """Enqueue directly (scripts, seeds). Returns None instead of raising when Redis is down.

    Request handlers record work with the outbox instead, so nothing is lost while Redis is down.
    """
    try:
        return publish(queue_name, func, args, kwargs)
    except RedisError as error:
        logger.error("could not enqueue %s on %s: %s", func, queue_name, type(error).__name__)
        return None


def _forget_finished_job(job_id: str) -> None:
    """A requeued task reuses its id; the previous run's finished job must make way."""
    try:
        job = Job.fetch(job_id, connection=get_redis())
    except NoSuchJobError:
        return
    if job.get_status() in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.STOPPED):
        job.delete()


def get_job_status(job_id: str) -> dict[str, Any] | None:
    try:
        job = Job.fetch(job_id, connection=get_redis())
    except NoSuchJobError:
        return None
    return {
        "id": job.id,
        "status": job.get_status(refresh=False),
        "queue": job.origin,
        "func": job.func_name,
        "enqueued_at": job.enqueued_at.isoformat() if job.enqueued_at else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "ended_at": job.ended_at.isoformat() if job.ended_at else None,
        "retries_left": job.retries_left,
        "result": job.return_value(refresh=False) if job.get_status(refresh=False) == JobStatus.FINISHED else None,
        "error": job.latest_result().exc_string if job.get_status(refresh=False) == JobStatus.FAILED else None,
    }


def cancel_job(job_id: str) -> bool:
    """Cancel a job that has not started. False when it is unknown or already running/finished."""
    try:
        job = Job.fetch(job_id, connection=get_redis())
    except NoSuchJobError:
        return False
    if job.get_status() not in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
        return False
    job.cancel()
    return True


def live_workers(redis: Redis) -> list[Worker]:
    """The registered RQ workers that are alive: each one's last heartbeat is younger than the
    TTL it promised with it (the `heartbeat_ttl` field our worker classes write: 60 s idle,
    90 s for a busy forking worker, a batch's longest job timeout + 60 s for a busy
    BatchWorker) or, for a worker that does not write it, than RQ's default worker TTL (420 s).

    `Worker.all()` also lists a worker that was SIGKILLed, until its key expires (up to 480 s
    for a stock worker); one that misses its promised heartbeat is left out here at once."""
    current = now()
    alive = []
    for worker in Worker.all(connection=redis):
        promised = redis.hget(worker.key, HEARTBEAT_TTL_FIELD)
        allowed = int(promised) if promised is not None else DEFAULT_WORKER_TTL
        if worker.last_heartbeat is not None and (current - worker.last_heartbeat).total_seconds() <= allowed:
            alive.append(worker)
    return alive


def scheduler_lock_holders(redis: Redis) -> dict[str, str | None]:
    """For each RQ queue, the name of the scheduler holding `rq:scheduler-lock:<queue>`, or
    None when no scheduler holds it (retries and delayed jobs of that queue then never move).
    A scheduler renews its locks every second; a lock lapses 61 s after its holder died."""
    with redis.pipeline(transaction=False) as pipeline:
        for name in RQ_QUEUES:
            pipeline.get(RQScheduler.get_locking_key(name))
        holders = pipeline.execute()
    return {
        name: holder.decode() if holder is not None else None for name, holder in zip(RQ_QUEUES, holders, strict=True)
    }


def overdue_scheduled(redis: Redis, grace_seconds: float) -> dict[str, int]:
    """For each RQ queue, how many jobs in its ScheduledJobRegistry (retries waiting for their
    delay, `enqueue_in`/`enqueue_at` jobs) were due more than `grace_seconds` ago. A running
    scheduler moves a due job to its queue within a second, so any count above zero with a
    few seconds' grace means no scheduler is working for that queue."""
    cutoff = now().timestamp() - grace_seconds
    with redis.pipeline(transaction=False) as pipeline:
        for name in RQ_QUEUES:
            pipeline.zcount(ScheduledJobRegistry(name, connection=redis).key, 0, cutoff)
        counts = pipeline.execute()
    return dict(zip(RQ_QUEUES, counts, strict=True))


def check_rq_health() -> dict[str, Any]:
    """Redis reachability, per-queue depth/started/failed counts and live workers."""
    redis = get_redis()
    report: dict[str, Any] = {"redis_url": mask_url(get_settings().redis_url)}
    try:
        redis.ping()
        workers = live_workers(redis)
        queues = {}
        for name in RQ_QUEUES:
            queue = get_queue(name)
            queues[name] = {
                "depth": queue.count,
                # Counted without RQ's cleanup, which `count` would run: cleaning fails the
                # abandoned jobs into their retries and runs their failure callbacks under a
                # SIGALRM time limit, work for the workers' maintenance, and impossible in
                # the API's thread (a ValueError, that was a 500 from /health/queues).
                "started": StartedJobRegistry(queue=queue).get_job_count(cleanup=False),
                "failed": FailedJobRegistry(queue=queue).get_job_count(cleanup=False),
                "workers": sum(1 for worker in workers if name in worker.queue_names()),
            }
    except RedisError as error:
        report.update(status="unhealthy", error=type(error).__name__)
        return report
    report.update(
        status="healthy" if all(q["workers"] for q in queues.values()) else "degraded",
        workers=len(workers),
        queues=queues,
    )
    return report
