from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from backend_app.core.pagination import page_example
from backend_app.tasks.models import TaskBackend, TaskStatus

TASK_EXAMPLE = {
    "id": "3f2b8c1e-9d4a-4e7b-8c2f-1a6d5e9b0c47",
    "backend": "rq",
    "queue": "analytics",
    "name": "backend_app.analytics.tasks.aggregate_user_stats_job",
    "owner_id": 42,
    "status": "succeeded",
    "attempts": 2,
    "created_at": "2025-03-07T10:00:00Z",
    "queued_at": "2025-03-07T10:00:01Z",
    "started_at": "2025-03-07T10:00:02Z",
    "finished_at": "2025-03-07T10:00:03Z",
    "updated_at": "2025-03-07T10:00:03Z",
    "last_error": "OperationalError: the connection to the database was lost",
    "result": {
        "followers": 18,
        "following": 25,
        "posts": 7,
        "applications_sent": 4,
        "applications_received": 0,
        "job_views": 31,
    },
    "request_id": "9b1d6f0c2a8e4f57b3c1d2e4f6a8b0c2",
}


class TaskOut(BaseModel):
    """The record of one background task, whichever backend (Celery or RQ) runs it: its status, attempts so far,
    when it was queued, started and finished, the last error and, once it succeeded, its result; `request_id` is
    the `X-Request-ID` of the request that recorded it (null for work recorded outside a request), which the
    relay's and the workers' log lines about the task carry."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={"examples": [TASK_EXAMPLE]},
    )

    id: str
    backend: TaskBackend
    queue: str
    name: str
    owner_id: int | None
    status: TaskStatus
    attempts: int
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    last_error: str | None
    result: Any | None
    request_id: str | None


class TaskPage(BaseModel):
    """A page of background tasks: `items` from `offset`, at most `limit` of them, out of `total`."""

    model_config = ConfigDict(json_schema_extra={"examples": [page_example(TASK_EXAMPLE)]})

    items: list[TaskOut]
    total: int
    limit: int
    offset: int


class QueueStats(BaseModel):
    """A queue's backlog: `depth` is the messages waiting in the broker (null when Redis cannot be reached);
    `waiting` the recorded tasks not yet started (pending, queued or retrying), the oldest for
    `oldest_waiting_seconds`; then the started, failed and dead ones."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "queue": "emails",
                    "backend": "celery",
                    "depth": 2,
                    "waiting": 3,
                    "oldest_waiting_seconds": 4.7,
                    "started": 1,
                    "failed": 0,
                    "dead": 0,
                }
            ]
        }
    )

    queue: str
    backend: TaskBackend
    depth: int | None  # messages waiting in the broker; None when Redis cannot be reached
    waiting: int  # recorded tasks not yet started (pending, queued or retrying)
    oldest_waiting_seconds: float | None
    started: int
    failed: int
    dead: int
