"""SQL for videos."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend_app.videos.models import Video, VideoStatus


async def get(session: AsyncSession, video_id: int) -> Video | None:
    return await session.get(Video, video_id)


async def media_key(session: AsyncSession, video_id: int) -> str | None:
    """The video's public media folder name, or None when the video is gone."""
    return await session.scalar(select(Video.media_key).where(Video.id == video_id))


async def add(
    session: AsyncSession,
    *,
    owner_id: int,
    original_filename: str,
    stored_path: str,
    size_bytes: int,
    width: int,
    height: int,
    duration_seconds: float | None,
) -> Video:
    video = Video(
        owner_id=owner_id,
        original_filename=original_filename,
        stored_path=stored_path,
        size_bytes=size_bytes,
        width=width,
        height=height,
        duration_seconds=duration_seconds,
        status=VideoStatus.uploaded,
    )
    session.add(video)
    await session.flush()
    return video


async def set_task(session: AsyncSession, video: Video, task_id: str) -> None:
    video.task_id = task_id
    await session.flush()


async def update_fields(session: AsyncSession, video_id: int, **values: Any) -> None:
    await session.execute(update(Video).where(Video.id == video_id).values(**values))
