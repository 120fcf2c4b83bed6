"""The outbox relay: moves recorded tasks from PostgreSQL to Celery and RQ.

    python -m backend_app.outbox.relay          (from api/; one of the Procfile processes)

It wakes on `NOTIFY outbox` (sent by every commit that records a task) and also polls, so
a lost notification or a dropped listener only delays delivery. Rows are claimed with
`FOR UPDATE SKIP LOCKED`: several relays can run at once and never publish the same row in
normal operation. A relay killed between publishing and committing may publish a row
again on restart; task ids make that harmless (RQ refuses a duplicate job id, and workers
skip a task whose record already succeeded). While the broker is down, rows are retried
with growing delays and nothing is lost.

A publish error fails its task only when no retry can help: an unknown queue or task, or
arguments that cannot be serialised (`is_permanent_publish_error`). Everything else, above
all anything that is or wraps a broker connection problem, postpones the row, however long
Redis stays away; the relay never needs a restart to publish again.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import pickle
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
from celery.exceptions import BackendError
from kombu import exceptions as kombu_errors
from redis.exceptions import RedisError
from rq.exceptions import DuplicateJobError

from backend_app.core.config import Settings, get_settings, mask_url, to_driver_dsn
from backend_app.core.logging import configure_logging, for_request
from backend_app.core.tracing import RELAY_SERVICE, setup_tracing, span_from
from backend_app.db.errors import is_connection_error
from backend_app.db.lifecycle import init_database
from backend_app.db.router import DatabaseRouter
from backend_app.metrics.shared import OUTBOX_PUBLISH_DELAY, OUTBOX_PUBLISH_FAILURES, shared_metrics
from backend_app.outbox import repository as outbox_repository
from backend_app.outbox.repository import NOTIFY_CHANNEL, ClaimedMessage
from backend_app.outbox.service import REDACTED_KEY
from backend_app.tasks import repository as task_repository
from backend_app.tasks.models import TaskBackend, TaskStatus
from backend_app.tasks.reconcile import Reconciler
from backend_app.worker import rq_app
from backend_app.worker.celery_app import celery_app
from backend_app.worker.tracking import COMMITTED_AT_KEY, DB_POSITION_KEY, REQUEST_ID_KEY

logger = logging.getLogger("backend_app.outbox.relay")

# The broker (or the way to it) is unwell; the same message will publish once it is back.
BROKER_ERRORS = (
    kombu_errors.OperationalError,  # what kombu turns a lost or refused connection into
    kombu_errors.ConnectionError,
    kombu_errors.ChannelError,
    kombu_errors.InconsistencyError,
    kombu_errors.LimitExceeded,
    RedisError,  # connection, timeout, LOADING, READONLY, OOM: Redis' state, not the message's
    BackendError,
    OSError,  # refused, reset, timed out
)
# The message itself can never be published: no queue or task of that name (KeyError, as
# Celery's QueueNotFound and NotRegistered are), or arguments that cannot be serialised.
PERMANENT_ERRORS = (KeyError, kombu_errors.SerializationError, kombu_errors.SerializerNotInstalled, pickle.PickleError)


def _causes(error: BaseException) -> list[BaseException]:
    """`error` and every exception it was raised from or while handling, nearest first."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and not any(current is seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def is_broker_error(error: BaseException) -> bool:
    """Whether `error` is, or was raised because of, a broker connection problem."""
    return any(isinstance(cause, BROKER_ERRORS) for cause in _causes(error))


def is_permanent_publish_error(error: BaseException) -> bool:
    """Whether publishing this message can never succeed, so its task should fail now.

    Anything that is or wraps a broker problem is not permanent, and neither is an error of an
    unknown kind: failing a task for good is only right when no retry can help.
    """
    return not is_broker_error(error) and isinstance(error, PERMANENT_ERRORS)


def publish(message: ClaimedMessage, db_position: str | None = None) -> None:
    """Put one task on its queue. Blocking: the relay calls it from a worker thread.

    `db_position` (a WAL position at or past the commit that recorded the task) travels with
    the message, so the worker's replica reads see what that request wrote; so does the id of
    that request, which the worker puts on its log lines (a Celery header, RQ job meta). With
    traces on, a `publish` span (PRODUCER), child of the trace context stored with the task,
    travels the same way (`traceparent`, `tracestate`): the worker's `run` span is its child.
    """
    attributes = {
        "messaging.system": message.backend.value,
        "messaging.operation.type": "send",
        "messaging.destination.name": message.queue,
        "messaging.message.id": message.task_id,
        "jobplatform.task.name": message.name,
    }
    publishing = span_from(
        f"publish {message.queue}", kind="producer", parent=message.trace_context, attributes=attributes
    )
    with publishing as trace_context:
        _publish(message, db_position, trace_context)


def _publish(message: ClaimedMessage, db_position: str | None, trace_context: dict[str, str]) -> None:
    args = message.payload.get("args", [])
    kwargs = message.payload.get("kwargs", {})
    # Celery headers / RQ job meta; each left out when there is none.
    extras: dict[str, Any] = {
        key: value for key, value in ((DB_POSITION_KEY, db_position), (REQUEST_ID_KEY, message.request_id)) if value
    }
    extras[COMMITTED_AT_KEY] = message.committed_at.timestamp()
    extras.update(trace_context)
    if message.backend is TaskBackend.celery:
        # Task events (Flower, logs) show kwargsrepr instead of secrets such as reset tokens.
        secret = message.payload.get(REDACTED_KEY, ())
        shown = {key: "***" if key in secret else value for key, value in kwargs.items()}
        celery_app.send_task(
            message.name,
            args=args,
            kwargs=kwargs,
            kwargsrepr=repr(shown),
            task_id=message.task_id,
            queue=message.queue,
            retry=False,
            headers=extras or None,
        )
    else:
        with contextlib.suppress(DuplicateJobError):
            rq_app.publish(message.queue, message.name, args, kwargs, job_id=message.task_id, meta=extras or None)


class Relay:
    def __init__(self, settings: Settings, router: DatabaseRouter) -> None:
        self.settings = settings
        self.router = router
        self.wake = asyncio.Event()
        self.published_total = 0
        self._broker_failures = 0
        self._publisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-publish")
        self.reconciler = Reconciler(settings)
        self._next_reconcile = time.monotonic() + settings.task_reconcile_interval

    def backoff_seconds(self, failures: int) -> float:
        return min(0.5 * 2 ** max(failures - 1, 0), self.settings.outbox_max_backoff)

    async def publish_batch(self) -> int:
        """Claim due messages and publish them; returns how many were published."""
        loop = asyncio.get_running_loop()
        async with self.router.write_session() as session:
            messages = await outbox_repository.claim(session, self.settings.outbox_batch_size)
            # Every claimed row was committed before this point in the WAL.
            db_position = await outbox_repository.current_wal_position(session) if messages else None
            published: list[ClaimedMessage] = []
            broker_away = False
            for message in messages:
                # What is logged about this message names the request that recorded it.
                with for_request(message.request_id):
                    try:
                        # In this context, so the publishing libraries' lines name the request too.
                        in_context = contextvars.copy_context().run
                        await loop.run_in_executor(self._publisher, in_context, publish, message, db_position)
                    except Exception as error:
                        self._count_failure(message, error)
                        if is_permanent_publish_error(error):
                            # This message can never be published (unknown queue, unserialisable
                            # arguments): fail its task visibly and go on, rather than block the rest.
                            reason = f"could not publish: {type(error).__name__}: {error}"
                            await outbox_repository.mark_sent(session, [message.message_id])
                            await task_repository.finish(
                                session, task_id=message.task_id, status=TaskStatus.failed, error=reason
                            )
                            logger.error("task %s (%s) %s", message.task_id, message.name, reason)
                            continue
                        delay = self.backoff_seconds(message.publish_attempts + 1)
                        await outbox_repository.postpone(
                            session, message.message_id, delay_seconds=delay, error=f"{type(error).__name__}: {error}"
                        )
                        if is_broker_error(error):
                            self._broker_failures += 1
                            logger.warning(
                                "broker unavailable publishing task %s (%s): %s; retrying in %.1fs",
                                message.task_id,
                                message.name,
                                type(error).__name__,
                                delay,
                            )
                            broker_away = True
                            break  # the rest would fail the same way
                        # Not known to be permanent: keep the task and retry it, loudly.
                        logger.error(
                            "unexpected error publishing task %s (%s); retrying in %.1fs",
                            message.task_id,
                            message.name,
                            delay,
                            exc_info=error,
                        )
                        continue
                    published.append(message)
                    shared_metrics().observe(
                        OUTBOX_PUBLISH_DELAY,
                        (message.backend.value, message.queue),
                        time.time() - message.committed_at.timestamp(),
                    )
                    self._broker_failures = 0
                    logger.debug("task %s (%s) published to %s", message.task_id, message.name, message.queue)
            if messages and not broker_away:
                # Blocking Redis I/O, so on the publisher's thread; before the commit, so a task
                # recorded as queued has its publish delay in. Failures counted while Redis is
                # away wait in the buffer for the first round that finds it back.
                await loop.run_in_executor(self._publisher, shared_metrics().flush)
            if published:
                await outbox_repository.mark_sent(session, [m.message_id for m in published])
                await task_repository.mark_queued(session, [m.task_id for m in published])
        if published:
            self.published_total += len(published)
            logger.info("published %d task(s); %d since start", len(published), self.published_total)
        return len(published)

    @staticmethod
    def _count_failure(message: ClaimedMessage, error: BaseException) -> None:
        if is_permanent_publish_error(error):
            reason = "permanent"
        elif is_broker_error(error):
            reason = "broker"
        else:
            reason = "unexpected"
        shared_metrics().inc(OUTBOX_PUBLISH_FAILURES, (message.backend.value, message.queue, reason))

    async def reconcile_if_due(self) -> int:
        """Every TASK_RECONCILE_INTERVAL: give a new outbox row to each task whose message Redis
        lost (tasks/reconcile.py). Returns how many; skipped while Redis is down."""
        if time.monotonic() < self._next_reconcile:
            return 0
        self._next_reconcile = time.monotonic() + self.settings.task_reconcile_interval
        try:
            async with self.router.write_session() as session:
                republished = await self.reconciler.check(session, rq_app.get_redis())
        except RedisError as error:
            # Publishing reports an outage; the records are compared once Redis answers.
            logger.info("task records not compared with Redis this time (%s)", type(error).__name__)
            return 0
        except Exception as error:
            if is_connection_error(error):
                raise  # the database is down: the loop waits for it
            # A deadlock with a worker's bookkeeping, a bug: the check is only a safety net,
            # so it is skipped this time rather than stopping the relay.
            logger.warning("task records not compared with Redis this time", exc_info=error)
            return 0
        return len(republished)

    async def _listen(self) -> asyncpg.Connection | None:
        dsn = to_driver_dsn(self.settings.database_url)
        try:
            connection = await asyncpg.connect(dsn, timeout=self.settings.db_read_connect_timeout)
            await connection.add_listener(NOTIFY_CHANNEL, lambda *_: self.wake.set())
        except Exception as error:
            if not is_connection_error(error) and not isinstance(error, asyncpg.PostgresError):
                raise
            logger.warning("cannot LISTEN on %s (%s); polling only", mask_url(dsn), type(error).__name__)
            return None
        logger.info("listening for NOTIFY %s on %s", NOTIFY_CHANNEL, mask_url(dsn))
        return connection

    async def run(self, stop: asyncio.Event) -> None:
        listener: asyncpg.Connection | None = None
        database_failures = 0
        logger.info("outbox relay started (poll every %.1fs)", self.settings.outbox_poll_interval)
        try:
            while not stop.is_set():
                if listener is None or listener.is_closed():
                    listener = await self._listen()
                self.wake.clear()
                try:
                    published = await self.publish_batch()
                    published += await self.reconcile_if_due()
                    database_failures = 0
                except Exception as error:
                    database_failures += 1
                    delay = self.backoff_seconds(database_failures)
                    if is_connection_error(error):
                        logger.warning("database unavailable (%s); retrying in %.1fs", type(error).__name__, delay)
                    else:
                        # A deadlock with a worker's bookkeeping, a statement timeout: the
                        # batch rolled back, its rows are claimed again next time. The relay
                        # must outlive it (under honcho its exit would stop every process).
                        logger.error("publishing a batch failed; retrying in %.1fs", delay, exc_info=error)
                    await self._sleep(stop, delay)
                    continue
                if published >= self.settings.outbox_batch_size:
                    continue  # more may be waiting (or the reconciler just added some)
                timeout = self.settings.outbox_poll_interval
                if self._broker_failures:
                    timeout = self.backoff_seconds(self._broker_failures)
                await self._sleep(stop, timeout)
        finally:
            if listener is not None and not listener.is_closed():
                await listener.close(timeout=2)
            self._publisher.shutdown(wait=False)
            logger.info("outbox relay stopped; %d task(s) published", self.published_total)

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()


async def main_async(settings: Settings) -> None:
    router = init_database(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await Relay(settings, router).run(stop)
    finally:
        await router.dispose()


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    setup_tracing(RELAY_SERVICE, settings)
    asyncio.run(main_async(settings))


if __name__ == "__main__":
    main()
