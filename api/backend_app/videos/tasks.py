"""Video tasks (RQ, queue `video_processing`): transcoding and thumbnails."""

from __future__ import annotations

from typing import Any

from backend_app.videos import service as videos
from backend_app.worker.queues import VIDEO_QUEUE
from backend_app.worker.registry import rq_task
from backend_app.worker.runtime import run_async


@rq_task(queue=VIDEO_QUEUE)
def process_video_job(
    video_id: int, video_path: str, user_id: int, processing_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Transcode to the asked renditions (default 720p and 480p, never upscaling) and thumbnail.

    `video_path` is relative to MEDIA_ROOT. Progress shows in GET /api/videos/{id}.
    """
    return run_async(videos.process(video_id=video_id, video_path=video_path, options=processing_options))


@rq_task(queue=VIDEO_QUEUE)
def generate_video_thumbnail_job(video_id: int, video_path: str, timestamp: str = "00:00:01.000") -> dict[str, Any]:
    return run_async(videos.make_thumbnail(video_id=video_id, video_path=video_path, timestamp=timestamp))
