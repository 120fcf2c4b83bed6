"""Celery tasks (queue `emails`). Thin: decode arguments, call a service, return a small result.

Names and keyword arguments are a contract with existing callers:
`send_welcome_email.delay(user_email=..., user_name=..., username=...)` keeps working.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from celery.signals import celeryd_after_setup
from sqlalchemy import text

from backend_app.core.celery_app import CELERY_QUEUES, EMAIL_QUEUE, celery_app
from backend_app.core.config import get_settings
from backend_app.core.read_replica import get_database_router
from backend_app.core.rq_app import QUEUE_CONFIG, get_redis
from backend_app.core.worker_runtime import run_async
from backend_app.emails.service import deliver
from backend_app.health.canary import mark_canary_done
from backend_app.outbox import repository as outbox_repository
from backend_app.tasks import repository as task_repository
from backend_app.tasks.tracking import TrackedTask

_settings = get_settings()
logger = logging.getLogger(__name__)


@celeryd_after_setup.connect
def _say_where_email_goes(sender: str, **_: object) -> None:
    settings = get_settings()
    if settings.smtp_host:
        logger.info("worker %s sends email through %s:%s", sender, settings.smtp_host, settings.smtp_port)
    else:
        logger.warning("worker %s: SMTP_HOST is empty, so emails are written to this log and NOT sent", sender)


TASK_OPTIONS = {
    "base": TrackedTask,
    "max_retries": _settings.task_max_retries,
    "retry_backoff_max": _settings.task_retry_backoff_max,
}


@celery_app.task(ignore_result=True)
def canary(canary_id: str) -> None:
    """The health check's probe: proves a worker is taking messages off the queue."""
    mark_canary_done(get_redis(), "celery", EMAIL_QUEUE, canary_id)


async def _purge_delivered_outbox_messages() -> int:
    cutoff = datetime.now(UTC) - timedelta(days=get_settings().outbox_retention_days)
    async with get_database_router().write_session() as session:
        return await outbox_repository.delete_sent_before(session, cutoff)


async def _purge_expired_task_records() -> int:
    cutoff = datetime.now(UTC) - timedelta(days=get_settings().task_record_retention_days)
    async with get_database_router().write_session() as session:
        return await task_repository.delete_finished_before(session, cutoff)


async def _expire_stalled_tasks() -> list[str]:
    settings = get_settings()
    now = datetime.now(UTC)
    # Twice the longest a task may run: past that, its worker is gone.
    limits = {queue: settings.celery_task_time_limit for queue in CELERY_QUEUES}
    limits.update({queue: config.job_timeout for queue, config in QUEUE_CONFIG.items()})
    cutoffs = {queue: now - timedelta(seconds=2 * limit) for queue, limit in limits.items()}
    async with get_database_router().write_session() as session:
        return await task_repository.expire_stalled(session, started_before=cutoffs)


@celery_app.task(**TASK_OPTIONS)
def expire_stalled_tasks() -> dict[str, object]:
    """Beat, every 10 minutes: tasks left `started` by a worker that died become `dead`."""
    expired = run_async(_expire_stalled_tasks())
    if expired:
        logger.warning("marked %d stalled task(s) dead: %s", len(expired), ", ".join(expired[:20]))
    return {"expired": len(expired)}


@celery_app.task(**TASK_OPTIONS)
def purge_delivered_outbox_messages() -> dict[str, int]:
    """Beat, hourly: outbox rows published more than OUTBOX_RETENTION_DAYS ago."""
    return {"deleted": run_async(_purge_delivered_outbox_messages())}


@celery_app.task(**TASK_OPTIONS)
def purge_expired_task_records() -> dict[str, int]:
    """Beat, hourly: finished task records older than TASK_RECORD_RETENTION_DAYS (dead ones stay)."""
    return {"deleted": run_async(_purge_expired_task_records())}


@celery_app.task(**TASK_OPTIONS)
def ping() -> str:
    """A tracked no-op: checks the whole path (outbox, relay, queue, worker, task record)."""
    return "pong"


@celery_app.task(bind=True, **TASK_OPTIONS)
def send_welcome_email(self: TrackedTask, user_email: str, user_name: str, username: str) -> dict[str, object]:
    return deliver(
        task_id=self.request.id or "direct",
        to_email=user_email,
        to_name=user_name,
        template="welcome",
        context={"user_name": user_name, "username": username},
    )


@celery_app.task(bind=True, **TASK_OPTIONS)
def send_job_application_email(
    self: TrackedTask,
    employer_email: str,
    employer_name: str,
    job_title: str,
    applicant_name: str,
    applicant_email: str,
    job_id: int,
) -> dict[str, object]:
    return deliver(
        task_id=self.request.id or "direct",
        to_email=employer_email,
        to_name=employer_name,
        template="job_application",
        context={
            "employer_name": employer_name,
            "job_title": job_title,
            "applicant_name": applicant_name,
            "applicant_email": applicant_email,
            "job_id": job_id,
        },
    )


@celery_app.task(bind=True, redacted_kwargs=("reset_token",), **TASK_OPTIONS)
def send_password_reset_email(
    self: TrackedTask, user_email: str, user_name: str, reset_token: str
) -> dict[str, object]:
    return deliver(
        task_id=self.request.id or "direct",
        to_email=user_email,
        to_name=user_name,
        template="password_reset",
        context={
            "user_name": user_name,
            "reset_token": reset_token,
            "valid_minutes": get_settings().password_reset_token_minutes,
        },
    )


@celery_app.task(bind=True, **TASK_OPTIONS)
def send_message_notification_email(
    self: TrackedTask, recipient_email: str, recipient_name: str, sender_name: str, message_preview: str
) -> dict[str, object]:
    return deliver(
        task_id=self.request.id or "direct",
        to_email=recipient_email,
        to_name=recipient_name,
        template="message_notification",
        context={"recipient_name": recipient_name, "sender_name": sender_name, "message_preview": message_preview},
    )


async def _cleanup_old_notifications() -> int:
    cutoff = datetime.now(UTC) - timedelta(days=get_settings().notification_retention_days)
    async with get_database_router().write_session() as session:
        # The notifications table arrives with the notifications feature; until then: nothing.
        exists = await session.scalar(text("SELECT to_regclass('public.notifications') IS NOT NULL"))
        if not exists:
            return 0
        result = await session.execute(
            text("DELETE FROM notifications WHERE read_at IS NOT NULL AND read_at < :cutoff"), {"cutoff": cutoff}
        )
        return result.rowcount or 0


@celery_app.task(bind=True, **TASK_OPTIONS)
def cleanup_old_notifications(self: TrackedTask) -> dict[str, object]:
    """Beat, daily: read notifications older than NOTIFICATION_RETENTION_DAYS.

    Two beat processes would each send it; the first run of the day claims the day in Redis
    and a second one (another task id) skips, so the clean-up runs once a day.
    """
    run_id = self.request.id or "direct"
    day_key = f"daily-run:cleanup_old_notifications:{datetime.now(UTC).date().isoformat()}"
    redis = get_redis()
    if not redis.set(day_key, run_id, nx=True, ex=2 * 86400) and redis.get(day_key) != run_id.encode():
        return {"deleted": 0, "skipped": "already ran today"}
    return {"deleted": run_async(_cleanup_old_notifications())}
