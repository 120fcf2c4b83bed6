from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from backend_app.tasks.models import TaskBackend, TaskStatus


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

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


class TaskPage(BaseModel):
    items: list[TaskOut]
    total: int
    limit: int
    offset: int


class QueueStats(BaseModel):
    queue: str
    backend: TaskBackend
    depth: int | None  # messages waiting in the broker; None when Redis cannot be reached
    waiting: int  # recorded tasks not yet started (pending, queued or retrying)
    oldest_waiting_seconds: float | None
    started: int
    failed: int
    dead: int
