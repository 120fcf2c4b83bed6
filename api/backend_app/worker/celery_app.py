"""The Celery app: Redis broker, the `emails` queue, beat's periodic cleanups.

    celery -A backend_app.core.celery_app worker --loglevel=info -Q emails --without-gossip --without-mingle
    celery -A backend_app.core.celery_app beat --loglevel=info
    celery -A backend_app.core.celery_app flower --port=5555   (login: FLOWER_BASIC_AUTH)

Delivery is at-least-once and survives a killed worker: a message is acknowledged only
after its task finished (late acks), a task whose worker process died is put back
(reject on worker lost), a worker holds one message at a time (prefetch 1), and a message
taken by a worker that vanished entirely is given to another after the visibility timeout.
Tasks must therefore be idempotent; `backend_app.worker.tracking.TrackedTask` skips a
redelivered task that already succeeded.

There is no result backend: a task's status and result live in its task record (PostgreSQL,
written by the worker), so publishing needs nothing but the broker, and nothing may read
`AsyncResult`. Every process retries the broker forever: a Redis outage of any length, or a
Redis that came back empty, is ridden out without a restart.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.signals import beat_init, setup_logging, worker_process_init, worker_process_shutdown
from kombu import Queue
from kombu.transport import redis as kombu_redis
from redis.exceptions import RedisError

from backend_app.core.config import Environment, Settings, get_settings
from backend_app.core.logging import configure_logging
from backend_app.core.tracing import CELERY_SERVICE, flush_tracing, setup_tracing
from backend_app.worker import registry
from backend_app.worker.queues import CELERY_QUEUES, EMAIL_QUEUE


def refuse_open_flower_in_production(settings: Settings, argv: list[str]) -> None:
    """Flower shows task arguments (emails, tokens): in production it must ask for a login."""
    if "flower" in argv and settings.environment is Environment.production and not settings.flower_basic_auth:
        raise SystemExit("Invalid setting FLOWER_BASIC_AUTH: required (user:password) when ENVIRONMENT=production")


def create_celery_app() -> Celery:
    settings = get_settings()
    refuse_open_flower_in_production(settings, sys.argv[1:])
    app = Celery("backend_app")
    app.conf.update(
        broker_url=settings.redis_url,
        task_serializer="json",
        accept_content=["json"],
        # No result backend (results live in task records); a task never stores one.
        task_ignore_result=True,
        timezone="UTC",
        enable_utc=True,
        include=[*registry.task_modules(), *settings.celery_imports],
        task_queues=[Queue(queue) for queue in CELERY_QUEUES],
        task_default_queue=EMAIL_QUEUE,
        task_routes={"backend_app.core.celery_tasks.*": {"queue": EMAIL_QUEUE}},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.celery_task_soft_time_limit,
        task_time_limit=settings.celery_task_time_limit,
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        broker_connection_timeout=5,
        # A running task keeps running when Redis goes away: cancelling it would turn a sent
        # email into an unknown outcome, and its message may be gone if Redis lost its data.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_transport_options={
            "visibility_timeout": settings.celery_visibility_timeout,
            # Look for messages orphaned by a vanished worker every visibility period or so.
            "unacked_restore_interval": max(1, min(60, settings.celery_visibility_timeout // 4)),
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": 5,
            "socket_timeout": 10,
            "health_check_interval": 10,
        },
        # A worker publishing a retry rides out a short Redis blip; the relay passes
        # retry=False itself because it keeps unsent work in the outbox.
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 5, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2},
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
    )
    return app


@beat_init.connect
def _schedule_declared_tasks(sender: Any, **_: object) -> None:
    """Beat's entries are declared beside their tasks (`schedule=` in `<domain>/tasks.py`);
    they are read here, in beat alone, before its scheduler starts, so the API and the relay
    publish with this app without importing task code."""
    sender.app.conf.beat_schedule = {**registry.beat_schedule(), **sender.app.conf.beat_schedule}


@setup_logging.connect
def _log_as_every_process_does(loglevel: int | str | None = None, **_: object) -> None:
    """Celery's own lines (received, succeeded, retry) and ours in one format, LOG_FORMAT's,
    with the request id: connecting here is what tells Celery to leave logging to us. The
    level is LOG_LEVEL when it is set, else the command line's `--loglevel`."""
    settings = get_settings()
    level = settings.log_level if "log_level" in settings.model_fields_set or loglevel is None else loglevel
    configure_logging(level, settings.log_format)


@worker_process_init.connect
def _trace_in_each_pool_process(**_: object) -> None:
    """Traces (when on) start in each pool process, after the fork: the span exporter's thread
    and connections are its own, and the main process, which only fetches messages, has none."""
    setup_tracing(CELERY_SERVICE)


@worker_process_shutdown.connect
def _export_the_last_spans(**_: object) -> None:
    flush_tracing()  # a pool process ends with os._exit: atexit would not export them


logger = logging.getLogger(__name__)


def _tolerate_a_dropped_connection(restore_unacked: Callable[..., Any]) -> Callable[..., Any]:
    """kombu 5.7: when Redis drops while a worker holds messages, Celery closes the broker
    connection, and closing its channel puts the held messages back through a connection
    that no longer exists: `AttributeError: 'NoneType' object has no attribute 'hostname'`,
    which Celery treats as unrecoverable and the worker exits (under honcho, taking every
    process with it; the soak found it). Here that is a warning: the messages stay in
    kombu's `unacked` hash, from where the visibility timeout or the relay's
    reconciliation (tasks/reconcile.py) brings them back."""

    @functools.wraps(restore_unacked)
    def restore(self: Any, client: Any = None) -> Any:
        try:
            return restore_unacked(self, client)
        except (AttributeError, RedisError, OSError) as error:
            logger.warning("could not give back unacknowledged messages now (%s); they stay in Redis", error)
            return None

    return restore


kombu_redis.QoS.restore_unacked = _tolerate_a_dropped_connection(kombu_redis.QoS.restore_unacked)

celery_app = create_celery_app()
app = celery_app
