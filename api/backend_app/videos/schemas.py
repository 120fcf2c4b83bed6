from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from backend_app.videos.models import VideoStatus


class VideoOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    owner_id: int
    original_filename: str
    size_bytes: int
    duration_seconds: float | None
    width: int | None
    height: int | None
    status: VideoStatus
    progress: int
    renditions: list[dict[str, Any]]
    thumbnail_url: str | None = None
    task_id: str | None
    error: str | None
    created_at: datetime


class UploadAccepted(BaseModel):
    video_id: int
    task_id: str
    status: VideoStatus
