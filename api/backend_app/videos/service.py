"""Video uploads and their processing (renditions, thumbnail, progress)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import update

from backend_app.core.config import Settings, get_settings
from backend_app.core.read_replica import AsyncWriteSession, get_database_router
from backend_app.core.worker_runtime import run_async
from backend_app.outbox import service as outbox
from backend_app.tasks.errors import PermanentTaskError
from backend_app.tasks.models import TaskBackend
from backend_app.videos import media
from backend_app.videos.models import Video, VideoStatus

logger = logging.getLogger(__name__)

QUALITIES = {"1080p": 1080, "720p": 720, "480p": 480, "360p": 360}
DEFAULT_QUALITIES = ["720p", "480p"]


def media_root(settings: Settings) -> Path:
    return Path(settings.media_root).resolve()


def media_url(relative_path: str, settings: Settings) -> str:
    """Public URL of a file under MEDIA_ROOT: from CDN_URL when set, else the API's /media route."""
    base = settings.cdn_url.rstrip("/") if settings.cdn_url else f"{settings.base_url.rstrip('/')}/media"
    return f"{base}/{relative_path}"


async def register_upload(
    *,
    session: AsyncWriteSession,
    owner_id: int,
    stored: Path,
    size: int,
    filename: str,
    probed: media.Probe,
    qualities: list[str],
) -> tuple[Video, str]:
    video = Video(
        owner_id=owner_id,
        original_filename=filename,
        stored_path=str(stored.relative_to(media_root(get_settings()))),
        size_bytes=size,
        width=probed.width,
        height=probed.height,
        duration_seconds=probed.duration_seconds,
        status=VideoStatus.uploaded,
    )
    session.add(video)
    await session.flush()
    task_id = await outbox.add(
        session=session,
        backend=TaskBackend.rq,
        queue="video_processing",
        task="backend_app.core.rq_tasks.process_video_job",
        kwargs={
            "video_id": video.id,
            "video_path": video.stored_path,
            "user_id": owner_id,
            "processing_options": {"quality": qualities},
        },
        idempotency_key=f"video-{video.id}",
        owner_id=owner_id,
    )
    video.task_id = task_id
    await session.flush()
    return video, task_id


async def _media_key(video_id: int) -> str:
    async with get_database_router().write_session() as session:
        video = await session.get(Video, video_id)
        if video is None:
            raise PermanentTaskError(f"video {video_id} no longer exists")
        return video.media_key


async def _update(video_id: int, **values: Any) -> None:
    async with get_database_router().write_session() as session:
        await session.execute(update(Video).where(Video.id == video_id).values(**values))


def process(*, video_id: int, video_path: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """Worker side: transcode to each asked rendition (never upscaling) and make a thumbnail."""
    settings = get_settings()
    media_key = run_async(_media_key(video_id))
    root = media_root(settings)
    source = root / video_path
    wanted = [q for q in (options or {}).get("quality", DEFAULT_QUALITIES) if q in QUALITIES] or DEFAULT_QUALITIES
    run_async(_update(video_id, status=VideoStatus.processing, progress=0, error=None))
    output_dir = root / "videos" / media_key
    try:
        probed = media.probe(source)
        # "720p" means a shorter side of 720 px (a portrait clip's rendition is 720 wide).
        source_short_side = min(probed.width, probed.height)
        sizes = [(q, QUALITIES[q]) for q in wanted if QUALITIES[q] <= source_short_side]
        if not sizes:  # smaller than every rendition asked for: keep its own size
            sizes = [("source", source_short_side)]
        if output_dir.exists():
            shutil.rmtree(output_dir)  # a retried job starts clean
        renditions = []
        last_reported = -1
        for index, (quality, short_side) in enumerate(sizes):

            def report(fraction: float, index: int = index) -> None:
                nonlocal last_reported
                percent = int(95 * (index + fraction) / len(sizes))
                if percent >= last_reported + 5:
                    last_reported = percent
                    run_async(_update(video_id, progress=percent))

            target = output_dir / f"{quality}.mp4"
            width, out_height = media.transcode(source, target, shown=probed, short_side=short_side, on_progress=report)
            relative = str(target.relative_to(root))
            renditions.append(
                {
                    "quality": quality,
                    "width": width,
                    "height": out_height,
                    "size_bytes": target.stat().st_size,
                    "path": relative,
                    "url": media_url(relative, settings),
                }
            )
        thumbnail = output_dir / "thumbnail.jpg"
        media.thumbnail(source, thumbnail, at_seconds=1.0)
    except media.MediaError as error:
        run_async(_update(video_id, status=VideoStatus.failed, error=str(error)))
        raise PermanentTaskError(str(error)) from None
    except BaseException as error:
        # Disk full, a timeout, a lost database: say so on the video, leave no half files.
        shutil.rmtree(output_dir, ignore_errors=True)
        run_async(_update(video_id, status=VideoStatus.failed, error=f"processing stopped: {type(error).__name__}"))
        raise
    thumbnail_path = str(thumbnail.relative_to(root))
    run_async(
        _update(video_id, status=VideoStatus.ready, progress=100, renditions=renditions, thumbnail_path=thumbnail_path)
    )
    logger.info("video %s ready: %s", video_id, ", ".join(r["quality"] for r in renditions))
    return {"video_id": video_id, "renditions": [r["quality"] for r in renditions]}


def make_thumbnail(*, video_id: int, video_path: str, timestamp: str) -> dict[str, Any]:
    settings = get_settings()
    root = media_root(settings)
    target = root / "videos" / run_async(_media_key(video_id)) / "thumbnail.jpg"
    try:
        media.thumbnail(root / video_path, target, at_seconds=media.parse_timestamp(timestamp))
    except (media.MediaError, ValueError) as error:
        raise PermanentTaskError(str(error)) from None
    relative = str(target.relative_to(root))
    run_async(_update(video_id, thumbnail_path=relative))
    return {"thumbnail": media_url(relative, settings)}
