"""Notification tasks: the RQ jobs that notify a user, and beat's daily clean-up (Celery).

Each job describes its notification (`Notice`); `notification_job` stores it in-app and
pushes it (notifications/service.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from celery import current_task
from celery.schedules import crontab

from backend_app.core.redis import get_redis
from backend_app.notifications.service import Notice, delete_read_notifications, notification_job
from backend_app.worker.queues import NOTIFICATIONS_QUEUE
from backend_app.worker.registry import celery_task, rq_task
from backend_app.worker.runtime import run_async


@rq_task(queue=NOTIFICATIONS_QUEUE)
@notification_job
def send_push_notification_job(
    user_id: int, title: str, body: str, notification_type: str, data: dict[str, Any] | None = None
) -> Notice:
    """Store an in-app notification and push it to the user's devices (if they want pushes)."""
    return Notice(user_id=user_id, type=notification_type, title=title, body=body, data=data or {})


@rq_task(queue=NOTIFICATIONS_QUEUE)
@notification_job
def send_new_follower_notification_job(follower_id: int, follower_name: str, followed_user_id: int) -> Notice:
    return Notice(
        user_id=followed_user_id,
        type="follow",
        title="New follower",
        body=f"{follower_name} started following you",
        data={"follower_id": follower_id},
    )


@rq_task(queue=NOTIFICATIONS_QUEUE)
@notification_job
def send_new_like_notification_job(liker_id: int, liker_name: str, post_owner_id: int, post_id: int) -> Notice:
    return Notice(
        user_id=post_owner_id,
        type="like",
        title="New like",
        body=f"{liker_name} liked your post",
        data={"liker_id": liker_id, "post_id": post_id},
    )


@rq_task(queue=NOTIFICATIONS_QUEUE)
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


@rq_task(queue=NOTIFICATIONS_QUEUE)
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


@celery_task(name="backend_app.core.celery_tasks.cleanup_old_notifications", schedule=crontab(hour=3, minute=30))
def cleanup_old_notifications() -> dict[str, object]:
    """Beat, daily: read notifications older than NOTIFICATION_RETENTION_DAYS.

    Two beat processes would each send it; the first run of the day claims the day in Redis
    and a second one (another task id) skips, so the clean-up runs once a day.
    """
    run_id = (current_task.request.id if current_task else None) or "direct"
    day_key = f"daily-run:cleanup_old_notifications:{datetime.now(UTC).date().isoformat()}"
    redis = get_redis()
    if not redis.set(day_key, run_id, nx=True, ex=2 * 86400) and redis.get(day_key) != run_id.encode():
        return {"deleted": 0, "skipped": "already ran today"}
    return {"deleted": run_async(delete_read_notifications())}
