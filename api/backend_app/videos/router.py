"""Video upload (streamed, size-limited, probed) and status with progress."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Request, status

from backend_app.auth.dependencies import CurrentUser, CurrentUserId
from backend_app.core.config import get_settings
from backend_app.core.read_replica import ReadSession, WriteSession
from backend_app.users.models import User
from backend_app.videos import media, service
from backend_app.videos.models import Video
from backend_app.videos.schemas import UploadAccepted, VideoOut
from backend_app.videos.upload import UploadRejected, receive_file

router = APIRouter(prefix="/api/videos", tags=["videos"])


@router.post(
    "/upload",
    response_model=UploadAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "quality": {"type": "string", "description": "comma-separated, e.g. 720p,480p"},
                        },
                    }
                }
            }
        }
    },
)
async def upload(request: Request, user_id: CurrentUserId, session: WriteSession) -> UploadAccepted:
    # The user is loaded after the body arrived: no connection is held during a long upload.
    settings = get_settings()
    directory = service.media_root(settings) / "uploads"
    try:
        received = await receive_file(request, directory=directory, max_bytes=settings.video_max_upload_bytes)
    except UploadRejected as rejected:
        raise HTTPException(rejected.status_code, detail=rejected.detail) from None
    qualities = [
        q.strip() for q in received.fields.get("quality", ",".join(service.DEFAULT_QUALITIES)).split(",") if q.strip()
    ]
    unknown = [q for q in qualities if q not in service.QUALITIES]
    if unknown or not qualities:
        received.path.unlink(missing_ok=True)
        raise HTTPException(422, detail=f"quality must be some of {', '.join(service.QUALITIES)}")
    try:
        probed = await asyncio.to_thread(media.probe, received.path)
    except media.MediaError as error:
        received.path.unlink(missing_ok=True)
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, detail=f"Not a video: {error}") from None
    if await session.get(User, user_id) is None:
        received.path.unlink(missing_ok=True)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="Not authenticated.")
    try:
        video, task_id = await service.register_upload(
            session=session,
            owner_id=user_id,
            stored=received.path,
            size=received.size,
            filename=received.filename,
            probed=probed,
            qualities=qualities,
        )
    except BaseException:
        received.path.unlink(missing_ok=True)
        raise
    return UploadAccepted(video_id=video.id, task_id=task_id, status=video.status)


@router.get("/{video_id}", response_model=VideoOut)
async def get_video(video_id: int, user: CurrentUser, session: ReadSession) -> VideoOut:
    video = await session.get(Video, video_id)
    if video is None or video.owner_id != user.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No such video.")
    out = VideoOut.model_validate(video)
    if video.thumbnail_path:
        out.thumbnail_url = service.media_url(video.thumbnail_path, get_settings())
    return out
