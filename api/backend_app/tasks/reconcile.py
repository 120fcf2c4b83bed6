"""Task records are the source of truth: work whose message vanished from Redis is published again.

Redis holds the messages of both backends, and a Redis that restarts without persistence
(or is flushed, or fails over to an empty replica) forgets them; a Celery worker killed
outright leaves the messages it held in kombu's `unacked` hash, where they would wait for
CELERY_VISIBILITY_TIMEOUT. The task records in PostgreSQL do not forget. The relay compares
the two every TASK_RECONCILE_INTERVAL seconds:

- a record `queued` or `retrying`, untouched for TASK_RECONCILE_GRACE seconds, must have its
  message in Redis: for RQ the job hash `rq:job:<id>` (it exists while the job waits, is
  scheduled for a retry, or runs); for Celery a message with that task id in the `emails`
  list (any priority) or in kombu's `unacked` hash (taken by a worker, or a retry waiting
  for its countdown). A Celery message held in `unacked` for longer than any live worker
  would hold it (its time limit, plus the longest retry countdown for a retry) belongs to
  a worker that died;
- a record `started` for longer than its queue's time limit plus the grace was abandoned by
  its worker (a live one would have stopped it at the limit): Celery's message is at best
  held by that dead worker; RQ's job must still exist for RQ's abandoned-job handling.

A record found so in two checks in a row gets a new outbox row, and the relay publishes it
again under the same task id. Effects are idempotent by task id (emails claim their
delivery row, notifications are stored once per task, a delivery of a task that already
succeeded is skipped), so a second copy that turns up later is harmless. The bound: a lost
message is published again within TASK_RECONCILE_GRACE + 2 x TASK_RECONCILE_INTERVAL
seconds (90 s with the defaults); a message held by a dead Celery worker within its time
limit (plus the retry countdown) more.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from redis import Redis
from sqlalchemy import case, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend_app.core.config import Settings
from backend_app.outbox import repository as outbox_repository
from backend_app.outbox.models import OutboxMessage
from backend_app.tasks.models import TaskBackend, TaskRecord, TaskStatus

logger = logging.getLogger(__name__)

# kombu's Redis transport: a queue is one list per priority step, named `<queue><sep><step>`
# (step 0 is the bare name), and messages taken but not acknowledged sit in one hash.
KOMBU_PRIORITY_SEPARATOR = "\x06\x16"
KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)
KOMBU_UNACKED_KEY = "unacked"
RQ_JOB_KEY_PREFIX = "rq:job:"
# Candidates looked at per check; the rest wait for the next check.
MAX_CANDIDATES = 1000


@dataclass(frozen=True)
class Candidate:
    task_id: str
    backend: TaskBackend
    queue: str
    status: TaskStatus
    age_seconds: float  # since it was last touched (queued, retrying) or started (started)


def time_limits(settings: Settings) -> dict[str, int]:
    """The longest a task of each queue may run, in seconds."""
    from backend_app.core.celery_app import CELERY_QUEUES
    from backend_app.core.rq_app import QUEUE_CONFIG

    limits = {queue: settings.celery_task_time_limit for queue in CELERY_QUEUES}
    limits.update({queue: config.job_timeout for queue, config in QUEUE_CONFIG.items()})
    return limits


async def candidates(session: AsyncSession, settings: Settings) -> list[Candidate]:
    """Records that should have a message in Redis and are old enough to be checked."""
    grace = timedelta(seconds=settings.task_reconcile_grace)
    started_too_long = [
        (TaskRecord.queue == queue) & (TaskRecord.started_at < func.now() - grace - timedelta(seconds=limit))
        for queue, limit in time_limits(settings).items()
    ]
    since = case((TaskRecord.status == TaskStatus.started, TaskRecord.started_at), else_=TaskRecord.updated_at)
    rows = await session.execute(
        select(
            TaskRecord.id,
            TaskRecord.backend,
            TaskRecord.queue,
            TaskRecord.status,
            func.extract("epoch", func.now() - since).label("age"),
        )
        .where(
            or_(
                TaskRecord.status.in_([TaskStatus.queued, TaskStatus.retrying])
                & (TaskRecord.updated_at < func.now() - grace),
                (TaskRecord.status == TaskStatus.started) & or_(*started_too_long),
            ),
            # Already on its way again (a requeue, or a check before this one).
            ~exists().where(OutboxMessage.task_id == TaskRecord.id, OutboxMessage.sent_at.is_(None)),
        )
        .order_by(TaskRecord.updated_at)
        .limit(MAX_CANDIDATES)
    )
    return [Candidate(row.id, row.backend, row.queue, row.status, float(row.age)) for row in rows.all()]


def _celery_task_ids(redis: Redis, queues: Iterable[str]) -> tuple[set[str], set[str]]:
    """Ids of the Celery messages in Redis: (waiting in a queue list, taken and unacknowledged)."""
    waiting: set[str | None] = set()
    for queue in queues:
        for step in KOMBU_PRIORITY_STEPS:
            key = queue if step == 0 else f"{queue}{KOMBU_PRIORITY_SEPARATOR}{step}"
            waiting.update(_message_task_id(raw) for raw in redis.lrange(key, 0, -1))
    held: set[str | None] = set()
    for raw in redis.hvals(KOMBU_UNACKED_KEY):
        try:
            message = json.loads(raw)[0]  # [message, exchange, routing key]
        except (ValueError, IndexError, TypeError, KeyError):
            continue
        held.add(_message_id(message))
    waiting.discard(None)
    held.discard(None)
    return waiting, held  # type: ignore[return-value]


def _message_task_id(raw: bytes | str) -> str | None:
    try:
        return _message_id(json.loads(raw))
    except ValueError:
        return None


def _message_id(message: object) -> str | None:
    headers = message.get("headers") if isinstance(message, dict) else None
    task_id = headers.get("id") if isinstance(headers, dict) else None
    return task_id if isinstance(task_id, str) else None


def longest_hold_seconds(candidate: Candidate, settings: Settings) -> float:
    """How long a live Celery worker may hold this task's message unacknowledged."""
    if candidate.status is TaskStatus.started:
        return 0.0  # already past its time limit: its worker is gone
    hold = settings.celery_task_time_limit + settings.task_reconcile_grace
    if candidate.status is TaskStatus.retrying:
        hold += settings.task_retry_backoff_max  # a retry waits out its countdown in the worker
    return hold


def lost_messages(redis: Redis, found: list[Candidate], settings: Settings) -> list[Candidate]:
    """The candidates whose message Redis lost or only a dead worker holds (blocking; run it
    in a thread)."""
    rq_candidates = [c for c in found if c.backend is TaskBackend.rq]
    celery_candidates = [c for c in found if c.backend is TaskBackend.celery]
    lost: list[Candidate] = []
    if rq_candidates:
        with redis.pipeline(transaction=False) as pipeline:
            for candidate in rq_candidates:
                pipeline.exists(f"{RQ_JOB_KEY_PREFIX}{candidate.task_id}")
            exists = pipeline.execute()
        lost += [c for c, present in zip(rq_candidates, exists, strict=True) if not present]
    if celery_candidates:
        waiting, held = _celery_task_ids(redis, {c.queue for c in celery_candidates})
        for candidate in celery_candidates:
            if candidate.task_id in waiting:
                continue
            if candidate.task_id in held and candidate.age_seconds <= longest_hold_seconds(candidate, settings):
                continue
            lost.append(candidate)
    return lost


class Reconciler:
    """Publishes again the tasks whose message is missing from Redis in two checks in a row."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._missing_last_time: set[str] = set()
        self.republished_total = 0

    async def check(self, session: AsyncSession, redis: Redis) -> list[Candidate]:
        """One check; returns the tasks given a new outbox row. Raises RedisError while Redis is down."""
        found = await candidates(session, self.settings)
        missing = await asyncio.to_thread(lost_messages, redis, found, self.settings) if found else []
        confirmed = [c for c in missing if c.task_id in self._missing_last_time]
        self._missing_last_time = {c.task_id for c in missing} - {c.task_id for c in confirmed}
        for candidate in confirmed:
            await outbox_repository.add_message(session, candidate.task_id)
        if confirmed:
            # The grace period starts again: the new message needs time to reach Redis.
            await session.execute(
                update(TaskRecord)
                .where(TaskRecord.id.in_([c.task_id for c in confirmed]))
                .values(updated_at=func.now())
            )
        if confirmed:
            self.republished_total += len(confirmed)
            logger.warning(
                "%d task(s) recorded %s had no live message in Redis (lost with its data, or held by a dead"
                " worker); published again: %s",
                len(confirmed),
                "/".join(sorted({c.status.value for c in confirmed})),
                ", ".join(f"{c.task_id} ({c.queue})" for c in confirmed[:20]),
            )
        return confirmed
