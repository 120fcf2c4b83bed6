"""RQ job functions (queues notifications, analytics, video_processing). Thin, like celery_tasks.

Names and keyword arguments are a contract with existing callers, e.g.
`enqueue_job("notifications", send_new_follower_notification_job, follower_id=1, ...)`.
"""

from __future__ import annotations

import uuid
from typing import Any

from rq import get_current_job

from backend_app.analytics import service as analytics
from backend_app.analytics.buffer import new_event
from backend_app.core.config import get_settings
from backend_app.core.logging import configure_worker_logging
from backend_app.core.rq_app import get_redis
from backend_app.health.canary import mark_canary_done
from backend_app.notifications.service import Notice, notification_job
from backend_app.tasks.tracking import tracked_job
from backend_app.videos import service as videos

# A stock `rq worker` imports this module in each work horse: give our log lines a handler there
# (a no-op in the API, whose logging is configured first).
configure_worker_logging(get_settings().log_level)


def canary_job(canary_id: str) -> None:
    """The health check's probe: proves a worker is taking jobs off this queue."""
    job = get_current_job()
    queue = job.origin if job is not None else "unknown"
    mark_canary_done(get_redis(), "rq", queue, canary_id)


@tracked_job
def ping_job() -> str:
    """A tracked no-op: checks the whole path (outbox, relay, queue, worker, task record)."""
    return "pong"


def _task_id() -> str | None:
    job = get_current_job()
    return job.id if job is not None else None


@tracked_job
@notification_job
def send_push_notification_job(
    user_id: int, title: str, body: str, notification_type: str, data: dict[str, Any] | None = None
) -> Notice:
    """Store an in-app notification and push it to the user's devices (if they want pushes)."""
    return Notice(user_id=user_id, type=notification_type, title=title, body=body, data=data or {})


@tracked_job
@notification_job
def send_new_follower_notification_job(follower_id: int, follower_name: str, followed_user_id: int) -> Notice:
    return Notice(
        user_id=followed_user_id,
        type="follow",
        title="New follower",
        body=f"{follower_name} started following you",
        data={"follower_id": follower_id},
    )


@tracked_job
@notification_job
def send_new_like_notification_job(liker_id: int, liker_name: str, post_owner_id: int, post_id: int) -> Notice:
    return Notice(
        user_id=post_owner_id,
        type="like",
        title="New like",
        body=f"{liker_name} liked your post",
        data={"liker_id": liker_id, "post_id": post_id},
    )


@tracked_job
@notification_job
def send_new_comment_notification_job(
    commenter_id: int, commenter_name: str, post_owner_id: int, post_id: int, comment_preview: str
) -> Notice:
    return Notice(
        user_id=post_owner_id,
        type="comment",
        title=f"{commenter_name} commented on your post",
        body=comment_preview,
        data={"commenter_id": commenter_id, "post_id": post_id},
    )


@tracked_job
@notification_job
def send_new_message_notification_job(
    sender_id: int, sender_name: str, receiver_id: int, message_preview: str
) -> Notice:
    return Notice(
        user_id=receiver_id,
        type="message",
        title=f"New message from {sender_name}",
        body=message_preview,
        data={"sender_id": sender_id},
    )


@tracked_job
def track_user_event_job(user_id: int, event_type: str, event_data: dict[str, Any] | None = None) -> dict[str, Any]:
    """One event, stored now (the API buffers high-volume events instead)."""
    job_id = _task_id()
    # A redelivered job has the same id, so the same event id: stored once.
    event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"rq-job:{job_id}")) if job_id else None
    event = new_event(event_type, user_id=user_id, data=event_data, event_id=event_id)
    return {"stored": analytics.store_one(event)}


@tracked_job
def aggregate_user_stats_job(user_id: int) -> dict[str, int]:
    """Followers, following, posts, applications sent/received and job views, stored."""
    return analytics.aggregate_user(user_id)


def flush_analytics_events_job() -> dict[str, int]:
    """Drain the analytics buffer into PostgreSQL. Untracked: it runs every second or so."""
    return {"stored": analytics.flush()}


@tracked_job
def process_video_job(
    video_id: int, video_path: str, user_id: int, processing_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Transcode to the asked renditions (default 720p and 480p, never upscaling) and thumbnail.

    `video_path` is relative to MEDIA_ROOT. Progress shows in GET /api/videos/{id}.
    """
    return videos.process(video_id=video_id, video_path=video_path, options=processing_options)


@tracked_job
def generate_video_thumbnail_job(video_id: int, video_path: str, timestamp: str = "00:00:01.000") -> dict[str, Any]:
    return videos.make_thumbnail(video_id=video_id, video_path=video_path, timestamp=timestamp)
