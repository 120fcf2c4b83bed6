"""The Celery app's delivery settings and routing (the workers are exercised in tests/tasks)."""

from __future__ import annotations

from backend_app.core import celery_app as celery_module
from backend_app.core.celery_app import celery_app
from backend_app.core.config import get_settings


def test_exported_under_both_names() -> None:
    assert celery_module.app is celery_module.celery_app


def test_settings_for_at_least_once_delivery() -> None:
    conf = celery_app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.enable_utc is True
    assert conf.task_soft_time_limit < conf.task_time_limit
    assert conf.broker_transport_options["visibility_timeout"] > get_settings().task_retry_backoff_max
    assert conf.broker_connection_retry_on_startup is True


def test_tasks_route_to_the_emails_queue() -> None:
    route = celery_app.amqp.router.route({}, "backend_app.core.celery_tasks.ping")
    assert route["queue"].name == "emails"


def test_beat_runs_the_cleanups() -> None:
    scheduled = {entry["task"] for entry in celery_app.conf.beat_schedule.values()}
    assert scheduled == {
        "backend_app.core.celery_tasks.cleanup_old_notifications",
        "backend_app.core.celery_tasks.expire_stalled_tasks",
        "backend_app.core.celery_tasks.purge_delivered_outbox_messages",
        "backend_app.core.celery_tasks.purge_expired_task_records",
    }
