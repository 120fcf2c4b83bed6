"""The task registry: each task declared once beside its domain, checked where it is called,
and every name a queued message may carry still runnable after the move."""

from __future__ import annotations

from pathlib import Path

import pytest
from rq import Callback, Queue
from rq.utils import import_attribute

from backend_app.core.celery_app import celery_app
from backend_app.emails import tasks as email_tasks
from backend_app.notifications import tasks as notification_tasks
from backend_app.tasks.models import TaskBackend
from backend_app.worker import registry
from backend_app.worker.queues import QUEUE_BACKENDS
from backend_app.worker.rq_app import get_redis
from devtools.devstack import LocalStack
from tests.conftest import SmtpSink, wait_for_mail
from tests.processes import celery_worker, rq_worker, wait_until

# What the previous release wrote into Redis: Celery task names, RQ function paths and the
# RQ failure callback, as they were before the tasks moved beside their domains.
OLD_CELERY_TASKS = [
    "backend_app.core.celery_tasks.send_welcome_email",
    "backend_app.core.celery_tasks.send_job_application_email",
    "backend_app.core.celery_tasks.send_password_reset_email",
    "backend_app.core.celery_tasks.send_message_notification_email",
    "backend_app.core.celery_tasks.cleanup_old_notifications",
    "backend_app.core.celery_tasks.expire_stalled_tasks",
    "backend_app.core.celery_tasks.purge_delivered_outbox_messages",
    "backend_app.core.celery_tasks.purge_expired_task_records",
    "backend_app.core.celery_tasks.ping",
    "backend_app.core.celery_tasks.canary",
]
# Tasks declared since, named by where they live.
NEW_CELERY_TASKS = [
    "backend_app.emails.tasks.send_verification_email",
    "backend_app.emails.tasks.send_account_deleted_email",
    "backend_app.emails.tasks.send_application_status_email",
]
OLD_RQ_FUNCTIONS = [
    "send_push_notification_job",
    "send_new_follower_notification_job",
    "send_new_like_notification_job",
    "send_new_comment_notification_job",
    "send_new_message_notification_job",
    "track_user_event_job",
    "aggregate_user_stats_job",
    "flush_analytics_events_job",
    "process_video_job",
    "generate_video_thumbnail_job",
    "ping_job",
    "canary_job",
]
OLD_FAILURE_CALLBACK = "backend_app.tasks.tracking.rq_job_failed"


def test_every_task_is_declared_on_a_queue_of_its_backend() -> None:
    tasks = registry.load_all()
    assert {name for name in tasks if tasks[name].backend is TaskBackend.celery} == set(
        OLD_CELERY_TASKS + NEW_CELERY_TASKS
    )
    assert {task.function_name for task in tasks.values() if task.backend is TaskBackend.rq} == set(OLD_RQ_FUNCTIONS)
    for task in tasks.values():
        assert QUEUE_BACKENDS[task.queue] is task.backend, task.name
        # An RQ task is named by where its function lives, and that name imports.
        if task.backend is TaskBackend.rq:
            assert import_attribute(task.name)


def test_a_wrong_or_missing_argument_fails_in_the_caller() -> None:
    with pytest.raises(TypeError, match="send_welcome_email: missing a required argument: 'username'"):
        email_tasks.send_welcome_email.call(user_email="a@example.com", user_name="A")
    with pytest.raises(TypeError, match="unexpected keyword argument 'follower'"):
        notification_tasks.send_new_follower_notification_job.call(
            follower_id=1, follower="A", follower_name="A", followed_user_id=2
        )
    call = notification_tasks.send_new_follower_notification_job.call(
        follower_id=1, follower_name="A", followed_user_id=2
    )
    assert call.task.queue == "notifications"
    assert call.kwargs == {"follower_id": 1, "follower_name": "A", "followed_user_id": 2}


def test_secrets_are_declared_with_their_task() -> None:
    assert email_tasks.send_password_reset_email.redacted_kwargs == ("reset_token",)
    assert celery_app.tasks[email_tasks.send_password_reset_email.name].redacted_kwargs == ("reset_token",)


def test_beat_entries_live_beside_their_tasks() -> None:
    assert registry.beat_schedule().keys() == {
        "cleanup-old-notifications",
        "expire-stalled-tasks",
        "purge-delivered-outbox-messages",
        "purge-expired-task-records",
    }


def test_the_old_import_paths_still_give_the_tasks() -> None:
    from backend_app.core import celery_tasks, rq_tasks

    assert celery_tasks.send_welcome_email.name == "backend_app.core.celery_tasks.send_welcome_email"
    for function in OLD_RQ_FUNCTIONS:
        assert import_attribute(f"backend_app.core.rq_tasks.{function}") is getattr(rq_tasks, function)
    assert callable(import_attribute(OLD_FAILURE_CALLBACK))
    with pytest.raises(ValueError, match="no_such_job"):
        import_attribute("backend_app.core.rq_tasks.no_such_job")


async def test_messages_queued_before_the_upgrade_run_after_it(
    smtp_sink: SmtpSink,
    stack: LocalStack,
    tmp_path: Path,
    make_user: object,
    test_task_tables: None,
) -> None:
    """Messages in Redis under the old names, with no worker running; then the new workers
    start (the Procfile's lines) and run every one of them."""
    followed_id, _ = make_user("followed")  # type: ignore[operator]
    celery_app.send_task(
        "backend_app.core.celery_tasks.send_welcome_email",
        kwargs={"user_email": "old@example.com", "user_name": "Old Message", "username": "old"},
        task_id="old-welcome",
        queue="emails",
    )
    notifications = Queue("notifications", connection=get_redis())
    notifications.enqueue_call(
        "backend_app.core.rq_tasks.send_new_follower_notification_job",
        kwargs={"follower_id": 1, "follower_name": "Old Follower", "followed_user_id": followed_id},
        job_id="old-follow",
        on_failure=Callback(OLD_FAILURE_CALLBACK),
    )
    # One that fails (an argument missing): the old failure callback must record it.
    notifications.enqueue_call(
        "backend_app.core.rq_tasks.send_new_like_notification_job",
        kwargs={"liker_id": 1},
        job_id="old-broken",
        on_failure=Callback(OLD_FAILURE_CALLBACK),
    )

    def status(task_id: str) -> str:
        assert stack.primary is not None
        return stack.primary.psql(f"SELECT status FROM task_records WHERE id = '{task_id}'")

    workers = [celery_worker(tmp_path).start(), rq_worker(tmp_path).start()]
    try:
        [mail] = await wait_for_mail(smtp_sink, "old@example.com")
        await wait_until(lambda: status("old-welcome") == "succeeded", what="the old welcome email's record")
        await wait_until(lambda: status("old-follow") == "succeeded", what="the old follow notification")
        await wait_until(lambda: status("old-broken") == "failed", what="the old broken job's failure")
    finally:
        for worker in workers:
            worker.stop()
    assert "Old Message" in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert stack.primary is not None
    assert (
        stack.primary.psql(f"SELECT body FROM notifications WHERE user_id = {followed_id} AND type = 'follow'")
        == "Old Follower started following you"
    )
    assert "TypeError" in stack.primary.psql("SELECT last_error FROM task_records WHERE id = 'old-broken'")


def test_a_database_outage_in_a_celery_task_is_retried_not_failed() -> None:
    """The soak's primary restart once failed an email whose claim met the restart: a
    connection error inside a tracked Celery task becomes a TransientTaskError (retried)."""
    from backend_app.db.errors import PrimaryUnavailableError
    from backend_app.tasks.errors import TransientTaskError

    def claim_during_a_restart() -> None:
        raise PrimaryUnavailableError("primary unavailable: DBAPIError")

    run = registry.database_outage_retried(claim_during_a_restart)
    with pytest.raises(TransientTaskError, match="database unavailable: PrimaryUnavailableError"):
        run()
    assert celery_app.tasks[email_tasks.send_welcome_email.name].autoretry_for == (TransientTaskError,)
