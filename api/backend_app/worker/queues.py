"""Every queue the service uses, declared once: its backend and its limits.

The registry, the relay, the health report, the task API and the stalled-task sweep read
these; nothing else lists queues.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend_app.core.config import Settings
from backend_app.tasks.models import TaskBackend

EMAIL_QUEUE = "emails"
NOTIFICATIONS_QUEUE = "notifications"
ANALYTICS_QUEUE = "analytics"
VIDEO_QUEUE = "video_processing"


@dataclass(frozen=True)
class QueueSettings:
    """An RQ queue's limits (Celery's come from the CELERY_TASK_* settings)."""

    job_timeout: int  # seconds a job may run before it is stopped
    result_ttl: int  # seconds a finished job's result is kept
    failure_ttl: int  # seconds a failed job is kept for inspection
    retry_intervals: tuple[int, ...]  # growing delays between attempts; their count is the retry limit


CELERY_QUEUES: tuple[str, ...] = (EMAIL_QUEUE,)

QUEUE_CONFIG: dict[str, QueueSettings] = {
    NOTIFICATIONS_QUEUE: QueueSettings(300, 3600, 7 * 86400, (10, 30, 120, 600)),
    ANALYTICS_QUEUE: QueueSettings(600, 3600, 7 * 86400, (30, 120, 600)),
    VIDEO_QUEUE: QueueSettings(1800, 86400, 14 * 86400, (60, 300)),
}
RQ_QUEUES: tuple[str, ...] = tuple(QUEUE_CONFIG)

QUEUE_BACKENDS: dict[str, TaskBackend] = {
    **dict.fromkeys(CELERY_QUEUES, TaskBackend.celery),
    **dict.fromkeys(RQ_QUEUES, TaskBackend.rq),
}
QUEUES_BY_BACKEND: dict[TaskBackend, tuple[str, ...]] = {TaskBackend.celery: CELERY_QUEUES, TaskBackend.rq: RQ_QUEUES}


def time_limits(settings: Settings) -> dict[str, int]:
    """The longest a task of each queue may run, in seconds."""
    limits = dict.fromkeys(CELERY_QUEUES, settings.celery_task_time_limit)
    limits.update({queue: config.job_timeout for queue, config in QUEUE_CONFIG.items()})
    return limits
