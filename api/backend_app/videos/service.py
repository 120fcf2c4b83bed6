"""Video uploads and their processing (renditions, thumbnail, progress)."""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from backend_app.auth.service import token_is_current
from backend_app.core.config import Settings, get_settings
from backend_app.core.security import AccessToken
from backend_app.db.lifecycle import get_database_router
from backend_app.db.sessions import AsyncWriteSession
from backend_app.outbox import service as outbox
from backend_app.tasks.errors import PermanentTaskError
from backend_app.videos import media, repository
from backend_app.videos import tasks as video_tasks
from backend_app.videos.models import Video, VideoStatus
from backend_app.worker.runtime import INTERRUPTIONS

logger = logging.getLogger(__name__)

T = TypeVar("T")

QUALITIES = {"1080p": 1080, "720p": 720, "480p": 480, "360p": 360}
DEFAULT_QUALITIES = ["720p", "480p"]


def media_root(settings: Settings) -> Path:
    return Path(settings.media_root).resolve()


def media_url(relative_path: str, settings: Settings) -> str:
    """Public URL of a file under MEDIA_ROOT: from CDN_URL when set, else the API's /media route."""
    base = settings.cdn_url.rstrip("/") if settings.cdn_url else f"{settings.base_url.rstrip('/')}/media"
    return f"{base}/{relative_path}"


class UnknownOwner(Exception):
    """The uploading account no longer exists (deleted while its token was still valid)."""


async def register_upload(
    *,
    session: AsyncWriteSession,
    owner: AccessToken,
    stored: Path,
    size: int,
    filename: str,
    probed: media.Probe,
    qualities: list[str],
) -> tuple[Video, str]:
    """Record an uploaded file and queue its processing (in the same transaction), for the
    account whose token this is if the token still opens a session (the account exists and
    its password has not changed since, and its sign-in session is open)."""
    if not await token_is_current(session, owner):
        raise UnknownOwner(owner.user_id)
    owner_id = owner.user_id
    video = await repository.add(
        session,
        owner_id=owner_id,
        original_filename=filename,
        stored_path=str(stored.relative_to(media_root(get_settings()))),
        size_bytes=size,
        width=probed.width,
        height=probed.height,
        duration_seconds=probed.duration_seconds,
    )
    task_id = await outbox.add(
        session,
        video_tasks.process_video_job.call(
            video_id=video.id,
            video_path=video.stored_path,
            user_id=owner_id,
            processing_options={"quality": qualities},
        ),
        idempotency_key=f"video-{video.id}",
        owner_id=owner_id,
    )
    await repository.set_task(session, video, task_id)
    return video, task_id


async def _media_key(video_id: int) -> str:
    async with get_database_router().write_session() as session:
        key = await repository.media_key(session, video_id)
    if key is None:
        raise PermanentTaskError(f"video {video_id} no longer exists")
    return key


async def _update(video_id: int, **values: Any) -> None:
    async with get_database_router().write_session() as session:
        await repository.update_fields(session, video_id, **values)


# Percent between two progress writes while transcoding.
PROGRESS_STEP = 5
# How long a stopped job waits for its FFmpeg thread to notice (it looks between frames).
STOP_WAIT_SECONDS = 3.0


class _Stopped(Exception):
    """Raised in the FFmpeg thread at its next frame once its job has stopped."""


class _MediaWork:
    """A job's blocking FFmpeg calls, each run in a thread while the job's coroutine writes
    the progress they report, so the whole job is one coroutine on the worker's loop."""

    def __init__(self, video_id: int) -> None:
        self.video_id = video_id
        self._loop = asyncio.get_running_loop()
        self._stop = threading.Event()
        self._handed_over = -1  # the thread's side: the last percent handed over
        self._unwritten: int | None = None  # the loop's side: handed over, not yet written
        self._wake: asyncio.Future[None] | None = None

    def reporter(self, step: int, steps: int) -> Callable[[float], None]:
        """The `on_progress` of step `step` of `steps`: 0-95% over all steps, throttled."""

        def report(fraction: float) -> None:  # in the FFmpeg thread, once per frame
            if self._stop.is_set():
                raise _Stopped
            percent = int(95 * (step + fraction) / steps)
            if percent >= self._handed_over + PROGRESS_STEP:
                self._handed_over = percent
                self._loop.call_soon_threadsafe(self._hand_over, percent)

        return report

    def _hand_over(self, percent: int) -> None:
        self._unwritten = percent
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _write_progress(self) -> None:
        percent, self._unwritten = self._unwritten, None
        if percent is not None:
            await _update(self.video_id, progress=percent)

    async def run(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`function(*args, **kwargs)` in a thread; the progress it reports is written meanwhile."""
        work = self._loop.run_in_executor(None, functools.partial(function, *args, **kwargs))
        try:
            while not work.done():
                await self._write_progress()
                self._wake = self._loop.create_future()
                await asyncio.wait([work, self._wake], return_when=asyncio.FIRST_COMPLETED)
            await self._write_progress()
            return work.result()
        except BaseException:
            # Cancelled (the job's timeout) or a progress write failed: FFmpeg stops at its
            # next frame, so it writes nothing more once the job's files are removed.
            self._stop.set()
            if not work.done():
                await asyncio.wait([work], timeout=STOP_WAIT_SECONDS)
            if work.done() and not work.cancelled():
                work.exception()  # retrieved: the error that stopped the job is the one to tell
            raise


def _stop_reason(error: BaseException) -> str:
    """What stopped a job. A job interrupted by its timeout sees the cancellation `run_async`
    sends after the signal; the interruption itself is the exception that cancellation
    happened during."""
    if isinstance(error, asyncio.CancelledError):
        cause = error.__context__
        while cause is not None:
            if isinstance(cause, INTERRUPTIONS):
                return type(cause).__name__
            cause = cause.__context__
    return type(error).__name__


async def process(*, video_id: int, video_path: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """Worker side, one coroutine per job: transcode to each asked rendition (never
    upscaling) and make a thumbnail. FFmpeg runs in a thread; progress is written here."""
    settings = get_settings()
    media_key = await _media_key(video_id)
    root = media_root(settings)
    source = root / video_path
    wanted = [q for q in (options or {}).get("quality", DEFAULT_QUALITIES) if q in QUALITIES] or DEFAULT_QUALITIES
    await _update(video_id, status=VideoStatus.processing, progress=0, error=None)
    output_dir = root / "videos" / media_key
    work = _MediaWork(video_id)
    try:
        probed = await work.run(media.probe, source)
        # "720p" means a shorter side of 720 px (a portrait clip's rendition is 720 wide).
        source_short_side = min(probed.width, probed.height)
        sizes = [(q, QUALITIES[q]) for q in wanted if QUALITIES[q] <= source_short_side]
        if not sizes:  # smaller than every rendition asked for: keep its own size
            sizes = [("source", source_short_side)]
        if output_dir.exists():
            shutil.rmtree(output_dir)  # a retried job starts clean
        renditions = []
        for index, (quality, short_side) in enumerate(sizes):
            target = output_dir / f"{quality}.mp4"
            width, out_height = await work.run(
                media.transcode,
                source,
                target,
                shown=probed,
                short_side=short_side,
                on_progress=work.reporter(index, len(sizes)),
            )
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
        await work.run(media.thumbnail, source, thumbnail, at_seconds=1.0)
    except media.MediaError as error:
        await _update(video_id, status=VideoStatus.failed, error=str(error))
        raise PermanentTaskError(str(error)) from None
    except BaseException as error:
        # Disk full, a timeout, a lost database: say so on the video, leave no half files.
        shutil.rmtree(output_dir, ignore_errors=True)
        await _update(video_id, status=VideoStatus.failed, error=f"processing stopped: {_stop_reason(error)}")
        raise
    thumbnail_path = str(thumbnail.relative_to(root))
    await _update(
        video_id, status=VideoStatus.ready, progress=100, renditions=renditions, thumbnail_path=thumbnail_path
    )
    logger.info("video %s ready: %s", video_id, ", ".join(r["quality"] for r in renditions))
    return {"video_id": video_id, "renditions": [r["quality"] for r in renditions]}


async def make_thumbnail(*, video_id: int, video_path: str, timestamp: str) -> dict[str, Any]:
    """Worker side, one coroutine per job: a thumbnail at `timestamp` ('00:00:01.000')."""
    settings = get_settings()
    root = media_root(settings)
    target = root / "videos" / await _media_key(video_id) / "thumbnail.jpg"
    try:
        at_seconds = media.parse_timestamp(timestamp)
        await _MediaWork(video_id).run(media.thumbnail, root / video_path, target, at_seconds=at_seconds)
    except (media.MediaError, ValueError) as error:
        raise PermanentTaskError(str(error)) from None
    relative = str(target.relative_to(root))
    await _update(video_id, thumbnail_path=relative)
    return {"thumbnail": media_url(relative, settings)}
