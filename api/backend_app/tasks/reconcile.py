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
  for its countdown). A Celery message held in `unacked` for longer than a live worker
  would hold it (from when it was taken, or from its countdown's end, past the task time
  limit and the grace: kombu's `unacked_index` says when) belongs to a worker that died;
  an RQ job counts only while it waits, is scheduled, deferred or running;
- a record `started` for longer than the grace must have its message too: RQ's job hash
  (status started while it runs; RQ's abandoned-job handling fails it into its retries if
  the worker died), Celery's copy in `unacked`. Past its queue's time limit plus the grace
  it was abandoned by its worker (a live one would have stopped it at the limit): Celery's
  message is at best held by that dead worker. Within the limit, a missing message may
  belong to a task still running in a live worker while Redis lost its data: a live RQ
  worker writes its running job back into Redis at its next heartbeat (worker/rq_outage.py),
  so such a record counts as lost only once its message has been missing for
  RUNNING_TASK_CONFIRM_SECONDS (two heartbeats). A Celery worker cannot do that; a second
  copy of a running email is held off by the delivery claim (emails/service.py). Without
  this, a worker killed with its job and then a Redis that lost its data left the record
  `started` for the whole time limit (30 minutes for a video).

A record found so in two checks in a row (for a record that may be running, that long
apart) gets a new outbox row, and the relay publishes it again under the same task id (a
dead worker's copy is taken out of `unacked` first, so Redis does not hand it out again
later). One relay checks at a time (an advisory lock), and each republish counts as an
attempt: a task that keeps vanishing is `dead` after TASK_MAX_ATTEMPTS instead of being
published forever. Effects are idempotent by task id (emails claim their delivery row,
notifications are stored once per task, a delivery of a task that already succeeded is
skipped), so a second copy that turns up later is harmless. The bound: a lost message is
published again within TASK_RECONCILE_GRACE + 2 x TASK_RECONCILE_INTERVAL seconds (90 s
with the defaults), RUNNING_TASK_CONFIRM_SECONDS more for a started one; a message held by
a dead Celery worker within its time limit (CELERY_TASK_TIME_LIMIT, after its countdown for
a retry) more.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from redis import Redis
from rq.defaults import DEFAULT_JOB_MONITORING_INTERVAL
from sqlalchemy.ext.asyncio import AsyncSession

from backend_app.core.config import Settings
from backend_app.outbox import repository as outbox_repository
from backend_app.tasks import repository as task_repository
from backend_app.tasks.models import TaskBackend, TaskStatus
from backend_app.worker.queues import time_limits

logger = logging.getLogger(__name__)

# kombu's Redis transport: a queue is one list per priority step, named `<queue><sep><step>`
# (step 0 is the bare name), and messages taken but not acknowledged sit in one hash.
KOMBU_PRIORITY_SEPARATOR = "\x06\x16"
KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)
KOMBU_UNACKED_KEY = "unacked"
KOMBU_UNACKED_INDEX_KEY = "unacked_index"
RQ_JOB_KEY_PREFIX = "rq:job:"
# RQ job statuses of a job that will still run (or is running) without our help.
RQ_LIVE_STATUSES = frozenset({b"queued", b"scheduled", b"deferred", b"started"})
# One relay compares at a time (pg_try_advisory_xact_lock key).
RECONCILE_LOCK_KEY = 0x7461736B_7265636F  # "taskreco"
# Candidates looked at per check; the rest wait for the next check.
MAX_CANDIDATES = 1000
# How long the message of a task that may still be running must be missing before it counts
# as lost: two heartbeats of a running RQ job, at each of which a live worker writes its job
# back into a Redis that lost it.
RUNNING_TASK_CONFIRM_SECONDS = 2 * DEFAULT_JOB_MONITORING_INTERVAL


@dataclass(frozen=True)
class Candidate:
    task_id: str
    backend: TaskBackend
    queue: str
    status: TaskStatus
    attempts: int
    started_at: datetime | None = None


@dataclass(frozen=True)
class Lost:
    candidate: Candidate
    # kombu delivery tags of copies a dead worker still holds, to take out of `unacked`.
    held_tags: tuple[str, ...] = ()


async def candidates(session: AsyncSession, settings: Settings) -> list[Candidate]:
    """Records that should have a message in Redis and are old enough to be checked."""
    rows = await task_repository.unreconciled(
        session, grace=timedelta(seconds=settings.task_reconcile_grace), limit=MAX_CANDIDATES
    )
    return [Candidate(row.id, row.backend, row.queue, row.status, row.attempts, row.started_at) for row in rows]


def may_be_running(candidate: Candidate, settings: Settings, now: datetime) -> bool:
    """Whether a live worker could still be running the task: started, and not yet past its
    queue's time limit plus the grace (a live worker stops it at the limit)."""
    if candidate.status is not TaskStatus.started or candidate.started_at is None:
        return False
    limit = time_limits(settings).get(candidate.queue, 0) + settings.task_reconcile_grace
    return candidate.started_at > now - timedelta(seconds=limit)


@dataclass(frozen=True)
class HeldMessage:
    tag: str
    held_since: float  # when a worker took it (kombu's unacked_index score, epoch seconds)
    eta: float | None  # when its countdown ends (a retry), epoch seconds


def _celery_messages(redis: Redis, queues: Iterable[str]) -> tuple[set[str], dict[str, list[HeldMessage]]]:
    """The Celery messages in Redis: ids waiting in a queue list, and copies taken by a
    worker and not acknowledged, by task id."""
    waiting: set[str] = set()
    for queue in queues:
        for step in KOMBU_PRIORITY_STEPS:
            key = queue if step == 0 else f"{queue}{KOMBU_PRIORITY_SEPARATOR}{step}"
            waiting.update(filter(None, (_message_id(_load(raw)) for raw in redis.lrange(key, 0, -1))))
    taken_at = {_text(tag): score for tag, score in redis.zrange(KOMBU_UNACKED_INDEX_KEY, 0, -1, withscores=True)}
    held: dict[str, list[HeldMessage]] = {}
    for tag, raw in redis.hgetall(KOMBU_UNACKED_KEY).items():
        stored = _load(raw)  # [message, exchange, routing key]
        message = stored[0] if isinstance(stored, list) and stored else None
        task_id = _message_id(message)
        if task_id is None:
            continue
        tag = _text(tag)
        held.setdefault(task_id, []).append(HeldMessage(tag, taken_at.get(tag, 0.0), _eta(message)))
    return waiting, held


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _load(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _message_id(message: object) -> str | None:
    headers = message.get("headers") if isinstance(message, dict) else None
    task_id = headers.get("id") if isinstance(headers, dict) else None
    return task_id if isinstance(task_id, str) else None


def _eta(message: object) -> float | None:
    headers = message.get("headers") if isinstance(message, dict) else None
    eta = headers.get("eta") if isinstance(headers, dict) else None
    if not isinstance(eta, str):
        return None
    try:
        return datetime.fromisoformat(eta).timestamp()
    except ValueError:
        return None


def abandoned(held: HeldMessage, settings: Settings, now: float) -> bool:
    """Whether no live worker could still be holding this copy: a live one runs a message
    when its countdown ends and stops it at the time limit."""
    due = max(held.held_since, held.eta or 0.0)
    return now > due + settings.celery_task_time_limit + settings.task_reconcile_grace


def lost_messages(redis: Redis, found: list[Candidate], settings: Settings) -> list[Lost]:
    """The candidates whose message Redis lost, or only a dead worker holds (blocking; run it
    in a thread)."""
    rq_candidates = [c for c in found if c.backend is TaskBackend.rq]
    celery_candidates = [c for c in found if c.backend is TaskBackend.celery]
    lost: list[Lost] = []
    if rq_candidates:
        with redis.pipeline(transaction=False) as pipeline:
            for candidate in rq_candidates:
                pipeline.hget(f"{RQ_JOB_KEY_PREFIX}{candidate.task_id}", "status")
            statuses = pipeline.execute()
        # A job that failed or finished while its record could not be written (the database
        # was down) will not run again by itself either.
        lost += [Lost(c) for c, status in zip(rq_candidates, statuses, strict=True) if status not in RQ_LIVE_STATUSES]
    if celery_candidates:
        waiting, held = _celery_messages(redis, {c.queue for c in celery_candidates})
        now = time.time()
        for candidate in celery_candidates:
            if candidate.task_id in waiting:
                continue
            copies = held.get(candidate.task_id, [])
            if any(not abandoned(copy, settings, now) for copy in copies):
                continue
            lost.append(Lost(candidate, tuple(copy.tag for copy in copies)))
    return lost


def forget_held(redis: Redis, tags: list[str]) -> None:
    """Take a dead worker's copies out of kombu's `unacked`, so they are not restored later."""
    if tags:
        with redis.pipeline(transaction=True) as pipeline:
            pipeline.hdel(KOMBU_UNACKED_KEY, *tags)
            pipeline.zrem(KOMBU_UNACKED_INDEX_KEY, *tags)
            pipeline.execute()


class Reconciler:
    """Publishes again the tasks whose message is missing from Redis in two checks in a row."""

    running_task_confirm_seconds: float = RUNNING_TASK_CONFIRM_SECONDS

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Task id -> when a check first found its message missing (time.monotonic()).
        self._missing_since: dict[str, float] = {}
        self.republished_total = 0

    async def check(self, session: AsyncSession, redis: Redis) -> list[Candidate]:
        """One check; returns the tasks given a new outbox row (or ended `dead`). Raises
        RedisError while Redis is down."""
        if not await task_repository.try_transaction_lock(session, RECONCILE_LOCK_KEY):
            return []  # another relay is checking
        found = await candidates(session, self.settings)
        lost = await asyncio.to_thread(lost_messages, redis, found, self.settings) if found else []
        confirmed = self._confirmed(lost)
        if not confirmed:
            return []
        await asyncio.to_thread(forget_held, redis, [tag for entry in confirmed for tag in entry.held_tags])
        limit = self.settings.task_max_attempts
        given_up = [entry.candidate for entry in confirmed if entry.candidate.attempts + 1 > limit]
        again = [entry.candidate for entry in confirmed if entry.candidate.attempts + 1 <= limit]
        for candidate in again:
            await outbox_repository.add_message(session, candidate.task_id)
        if again:
            # Counted as an attempt: a task that keeps vanishing ends dead.
            await task_repository.count_republished(session, [c.task_id for c in again])
            self.republished_total += len(again)
            logger.warning(
                "%d task(s) recorded %s had no live message in Redis (lost with its data, or held by a dead"
                " worker); published again: %s",
                len(again),
                "/".join(sorted({c.status.value for c in again})),
                ", ".join(f"{c.task_id} ({c.queue})" for c in again[:20]),
            )
        for candidate in given_up:
            await task_repository.finish(
                session,
                task_id=candidate.task_id,
                status=TaskStatus.dead,
                error=f"its message vanished from Redis again after {candidate.attempts} attempts; gave up",
            )
            logger.error(
                "task %s (%s) dead: its message keeps vanishing from Redis", candidate.task_id, candidate.queue
            )
        return [*again, *given_up]

    def _confirmed(self, lost: list[Lost]) -> list[Lost]:
        """The losses seen in an earlier check too (long enough ago for a task that may be
        running); the others are remembered for the next check."""
        checked_at, wall_clock = time.monotonic(), datetime.now(UTC)
        missing_since = {entry.candidate.task_id: self._missing_since.get(entry.candidate.task_id) for entry in lost}
        confirmed = []
        for entry in lost:
            since = missing_since[entry.candidate.task_id]
            if since is None:
                continue
            wait = (
                self.running_task_confirm_seconds if may_be_running(entry.candidate, self.settings, wall_clock) else 0
            )
            if checked_at - since >= wait:
                confirmed.append(entry)
        done = {entry.candidate.task_id for entry in confirmed}
        self._missing_since = {
            task_id: checked_at if since is None else since
            for task_id, since in missing_since.items()
            if task_id not in done
        }
        return confirmed
