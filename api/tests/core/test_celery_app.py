"""The Celery app's delivery settings and routing (the workers are exercised in tests/tasks)."""

from __future__ import annotations

from celery.signals import beat_init

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
    # Beat reads the entries declared beside their tasks when it starts (`beat_init`).
    from celery.apps.beat import Beat

    beat_init.send(sender=Beat(app=celery_app))
    scheduled = {entry["task"] for entry in celery_app.conf.beat_schedule.values()}
    assert scheduled == {
        "backend_app.core.celery_tasks.cleanup_old_notifications",
        "backend_app.core.celery_tasks.expire_stalled_tasks",
        "backend_app.core.celery_tasks.purge_delivered_outbox_messages",
        "backend_app.core.celery_tasks.purge_expired_task_records",
    }


def test_no_result_backend_so_publishing_needs_only_the_broker() -> None:
    from celery.backends.base import BaseBackend, DisabledBackend

    # Task records hold status and results; a Redis result backend was a second, fragile copy
    # that the relay's client gave up on after ~20 s without Redis.
    assert celery_app.conf.result_backend is None
    assert isinstance(celery_app.backend, DisabledBackend)
    # What send_task calls on the backend for every message: the no-op, no Redis subscription.
    assert type(celery_app.backend).on_task_call is BaseBackend.on_task_call
    assert celery_app.conf.task_ignore_result is True


def test_workers_ride_out_a_broker_outage_of_any_length() -> None:
    conf = celery_app.conf
    assert conf.broker_connection_retry is True
    assert conf.broker_connection_max_retries is None
    # A running task is not cancelled when Redis goes away (its email may be half sent).
    assert conf.worker_cancel_long_running_tasks_on_connection_loss is False


def test_procfile_worker_runs_without_gossip_and_mingle() -> None:
    from tests.processes import procfile_commands

    # Gossip's restart step logged an AttributeError traceback on every broker reconnect
    # (celery/worker/consumer/gossip.py closes its channel on a connection already dropped);
    # Flower reads events, not gossip, and nothing here needs mingle's revoked-task sync.
    worker = procfile_commands()["celery"].split()
    assert "--without-gossip" in worker
    assert "--without-mingle" in worker
