"""Analytics tasks (RQ, queue `analytics`): one event stored now, a user's figures, the buffer flush."""

from __future__ import annotations

import uuid
from typing import Any

from rq import get_current_job

from backend_app.analytics import service as analytics
from backend_app.analytics.buffer import new_event
from backend_app.worker.queues import ANALYTICS_QUEUE
from backend_app.worker.registry import rq_task


@rq_task(queue=ANALYTICS_QUEUE)
def track_user_event_job(user_id: int, event_type: str, event_data: dict[str, Any] | None = None) -> dict[str, Any]:
    """One event, stored now (the API buffers high-volume events instead)."""
    job = get_current_job()
    # A redelivered job has the same id, so the same event id: stored once.
    event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"rq-job:{job.id}")) if job is not None else None
    event = new_event(event_type, user_id=user_id, data=event_data, event_id=event_id)
    return {"stored": analytics.store_one(event)}


@rq_task(queue=ANALYTICS_QUEUE)
def aggregate_user_stats_job(user_id: int) -> dict[str, int]:
    """Followers, following, posts, applications sent/received and job views, stored."""
    return analytics.aggregate_user(user_id)


@rq_task(queue=ANALYTICS_QUEUE, tracked=False)
def flush_analytics_events_job() -> dict[str, int]:
    """Drain the analytics buffer into PostgreSQL. Untracked: it runs every second or so."""
    return {"stored": analytics.flush()}
