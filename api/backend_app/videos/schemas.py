from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from backend_app.videos.models import VideoStatus


class VideoOut(BaseModel):
    """An uploaded video and its processing: `progress` 0-100; once `ready`, the renditions (quality, width, height,
    size_bytes, url) and a thumbnail; `error` says why it `failed`."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": 15,
                    "owner_id": 42,
                    "original_filename": "intro.mp4",
                    "size_bytes": 18350080,
                    "duration_seconds": 62.4,
                    "width": 1920,
                    "height": 1080,
                    "status": "failed",
                    "progress": 35,
                    "renditions": [],
                    "task_id": "5c1d7e2a-8b3f-4a6c-9e0d-2f4b6a8c1e3d",
                    "error": "processing stopped: JobTimeoutException",
                    "created_at": "2025-03-08T11:20:00Z",
                }
            ]
        },
    )

    id: int
    owner_id: int
    original_filename: str
    size_bytes: int
    duration_seconds: float | None
    width: int | None
    height: int | None
    status: VideoStatus
    progress: int
    renditions: list[dict[str, Any]] = Field(
        description="Once `ready`, one entry per quality made: `{quality, width, height, size_bytes, path, url}`"
        " (`quality` is `1080p`, `720p`, `480p`, `360p`, or `source` for a video smaller than every quality asked for)."
    )
    thumbnail_url: str | None = None
    task_id: str | None
    error: str | None
    created_at: datetime


class UploadAccepted(BaseModel):
    """An upload taken in: the video's id (`GET /api/videos/{video_id}` follows its processing) and the processing
    task's id."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"video_id": 15, "task_id": "5c1d7e2a-8b3f-4a6c-9e0d-2f4b6a8c1e3d", "status": "uploaded"}]
        }
    )

    video_id: int
    task_id: str
    status: VideoStatus
