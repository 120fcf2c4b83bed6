"""Video upload (streamed, size-limited, probed) and status with progress."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, HTTPException, Request, status

from backend_app.auth.dependencies import CurrentUser, SignedInToken
from backend_app.core import rate_limit
from backend_app.core.config import Settings, get_settings
from backend_app.core.errors import invalid
from backend_app.core.openapi import VALIDATION_ERROR_RESPONSE, WHITE_SPACE, WHITE_SPACE_PATTERN, RowId, errors
from backend_app.core.security import AccessToken
from backend_app.db.dependencies import ReadSession, get_db_write
from backend_app.videos import media, repository, service
from backend_app.videos.schemas import UploadAccepted, VideoOut
from backend_app.videos.slots import UploadsBusy, upload_slot
from backend_app.videos.upload import InvalidFile, ReceivedUpload, UploadRejected, receive_file

router = APIRouter(prefix="/api/videos", tags=["videos"])

# The WriteSession dependency's own session (commit before the response, the commit's
# X-DB-Position on it), opened by the route once the body is in rather than before it.
write_session_for = contextlib.asynccontextmanager(get_db_write)

UPLOAD_ERRORS = {**errors(400, 408, 415, 429, 503), 422: VALIDATION_ERROR_RESPONSE}

QUALITY_MAX_LENGTH = 100
DEFAULT_QUALITIES = ",".join(service.DEFAULT_QUALITIES)
_quality = f"(?:{'|'.join(service.QUALITIES)})"
_space = f"{WHITE_SPACE_PATTERN}*"
# Comma-separated qualities, spaces around them and empty items ignored, at least one named.
QUALITY_PATTERN = rf"^(?:{_space},)*{_space}{_quality}{_space}(?:,{_space}(?:{_quality}{_space})?)*$"


@router.post(
    "/upload",
    response_model=UploadAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=UPLOAD_ERRORS,
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary", "minLength": 1},
                            "quality": {
                                "type": "string",
                                "description": f"comma-separated, e.g. 1080p,480p; default {DEFAULT_QUALITIES}",
                                "maxLength": QUALITY_MAX_LENGTH,
                                "pattern": QUALITY_PATTERN,
                            },
                        },
                        # Other fields are not read.
                        "additionalProperties": False,
                    }
                }
            }
        }
    },
    summary="Upload a video",
)
async def upload(request: Request, token: SignedInToken) -> UploadAccepted:
    """VIDEO_UPLOADS_PER_USER uploads per user at once, RATE_LIMIT_UPLOADS_PER_USER a period
    (429 beyond either). The body is read and the file probed before a database connection is
    opened, so a slow or stalled client holds an upload slot and a temporary file, never one
    of the primary's connections."""
    settings = get_settings()
    user_id = token.user_id
    await rate_limit.hit(
        settings.rate_limit_uploads_per_user, "upload", str(user_id), detail="Too many uploads; retry later."
    )
    try:
        async with upload_slot(user_id, limit=settings.video_uploads_per_user):
            received = await _receive(request, settings)
            try:
                return await _register(request, token, received)
            except BaseException:
                received.path.unlink(missing_ok=True)
                raise
    except UploadsBusy as busy:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"You already have {busy.limit} uploads in progress; send this one when one of them is done.",
            headers={"Retry-After": str(busy.retry_after), "Connection": "close"},
        ) from None


async def _receive(request: Request, settings: Settings) -> ReceivedUpload:
    try:
        return await receive_file(
            request,
            directory=service.media_root(settings) / "uploads",
            max_bytes=settings.video_max_upload_bytes,
            idle_seconds=settings.video_upload_idle_timeout_seconds,
        )
    except UploadRejected as rejected:
        raise HTTPException(rejected.status_code, detail=rejected.detail, headers=rejected.headers) from None
    except InvalidFile as error:
        raise invalid(("body", "file"), str(error)) from None


def _qualities(received: ReceivedUpload) -> list[str]:
    listed = received.fields.get("quality")
    if listed is None:
        return list(service.DEFAULT_QUALITIES)
    qualities = [q.strip(WHITE_SPACE) for q in listed.split(",") if q.strip(WHITE_SPACE)]
    if len(listed) > QUALITY_MAX_LENGTH or not qualities or any(q not in service.QUALITIES for q in qualities):
        raise invalid(("body", "quality"), f"quality must be some of {', '.join(service.QUALITIES)}")
    return qualities


async def _register(request: Request, token: AccessToken, received: ReceivedUpload) -> UploadAccepted:
    qualities = _qualities(received)
    try:
        probed = await asyncio.to_thread(media.probe, received.path)
    except media.MediaError as error:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, detail=f"Not a video: {error}") from None
    try:
        async with write_session_for(request) as session:
            video, task_id = await service.register_upload(
                session=session,
                owner=token,
                stored=received.path,
                size=received.size,
                filename=received.filename,
                probed=probed,
                qualities=qualities,
            )
    except service.UnknownOwner:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="This session has ended; sign in again.",
            headers={"WWW-Authenticate": "Bearer"},
        ) from None
    return UploadAccepted(video_id=video.id, task_id=task_id, status=video.status)


# `:int`, so GET /api/videos/upload is the upload's 405, not a video id that is no number.
@router.get("/{video_id:int}", response_model=VideoOut)
async def get_video(video_id: RowId, user: CurrentUser, session: ReadSession) -> VideoOut:
    """One of your videos: its status, processing progress (0-100), the renditions (quality, size, URL) and thumbnail
    once ready, or the error. Another user's video is a 404, as an unknown one."""
    video = await repository.get(session, video_id)
    if video is None or video.owner_id != user.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No such video.")
    out = VideoOut.model_validate(video)
    if video.thumbnail_path:
        out.thumbnail_url = service.media_url(video.thumbnail_path, get_settings())
    return out
