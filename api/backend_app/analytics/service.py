"""Analytics: accepting events cheaply, storing them in batches, computing figures."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from redis.exceptions import RedisError

from backend_app.analytics import buffer, repository
from backend_app.analytics import tasks as analytics_tasks
from backend_app.analytics.models import UserStats
from backend_app.db.lifecycle import get_database_router
from backend_app.db.sessions import AsyncReadSession, AsyncWriteSession
from backend_app.jobs.models import Job
from backend_app.outbox import service as outbox
from backend_app.users import repository as users
from backend_app.users.models import User
from backend_app.worker import rq_app
from backend_app.worker.runtime import run_async

logger = logging.getLogger(__name__)


class Forbidden(Exception):
    pass


class UnknownUser(Exception):
    pass


@dataclass(frozen=True)
class JobFigures:
    views_per_day: list[tuple[date, int]]
    applications: int


async def user_stats(*, session: AsyncReadSession, reader: User, user_id: int) -> UserStats:
    """An account's figures, for itself and administrators: the stored ones (the aggregate
    task's), or, before the task first ran for it, computed now by the same function and
    returned without being stored (a read writes nothing; the refresh route stores them)."""
    if user_id != reader.id and not reader.is_admin:
        raise Forbidden("You may read only your own figures.")
    stored = await repository.user_stats(session, user_id)
    if stored is not None:
        return stored
    if user_id != reader.id:
        account = await users.get(session, user_id)
        if account is None or account.deleted_at is not None:
            raise UnknownUser(user_id)
    figures = await repository.compute_user_stats(session, user_id)
    return UserStats(user_id=user_id, **figures, computed_at=datetime.now(UTC))


async def job_stats(*, session: AsyncReadSession, reader: User, job: Job) -> JobFigures:
    """A job's views per day and applications, for its employer and administrators."""
    if job.employer_id != reader.id and not reader.is_admin:
        raise Forbidden("Only the job's employer may read its figures.")
    return JobFigures(
        views_per_day=await repository.job_views_per_day(session, job.id),
        applications=await repository.job_applications(session, job.id),
    )


def _queue_flush() -> None:
    rq_app.publish_call(analytics_tasks.flush_analytics_events_job.call())


def buffer_events(events: list[dict[str, Any]]) -> None:
    """Append to the Redis buffer (blocking; call it from a thread). Raises RedisError."""
    buffer.append(rq_app.get_redis(), events, _queue_flush)


async def accept(*, session: AsyncWriteSession, events: list[dict[str, Any]]) -> int:
    """Store client events in the request's transaction: a 202 means they are in PostgreSQL.

    They were once buffered in Redis, but a Redis restarted without its data lost the
    buffer, and with it events the API had accepted. One multi-row insert per request (up to
    100 events) is cheap on the primary; only server-side job views still use the buffer.
    """
    for event in events:
        event["occurred_at"] = datetime.fromisoformat(event["occurred_at"])
    return await repository.insert_batch(session, events)


async def request_stats_refresh(*, session: AsyncWriteSession, user_id: int) -> str:
    """Queue the recomputation of a user's figures (through the outbox); returns its task id."""
    return await outbox.add(session, analytics_tasks.aggregate_user_stats_job.call(user_id=user_id), owner_id=user_id)


async def record_server_event(event: dict[str, Any]) -> None:
    """A server-side event (a job view) from a read request: buffered, never failing the request.

    Best effort by design: a read must not write to the primary, so a view buffered in a
    Redis that then loses its data (at most about a second of views) is not counted.
    """
    try:
        await asyncio.to_thread(buffer_events, [event])
    except RedisError as error:
        logger.warning("analytics event %s dropped: buffer unavailable (%s)", event["event_type"], type(error).__name__)


async def _store(events: list[dict[str, Any]]) -> int:
    async with get_database_router().write_session() as session:
        return await repository.insert_batch(session, events)


def flush() -> int:
    """Worker side: drain the buffer into PostgreSQL in batches (one coroutine for the whole job)."""
    return run_async(buffer.drain(rq_app.get_redis(), _store))


async def _aggregate(user_id: int) -> dict[str, int]:
    router = get_database_router()
    # Counting is replica work; the task's position makes the replica show what led to it.
    async with router.read_session() as session:
        figures = await repository.compute_user_stats(session, user_id)
    async with router.write_session() as session:
        await repository.store_user_stats(session, user_id, figures)
    return figures


def aggregate_user(user_id: int) -> dict[str, int]:
    return run_async(_aggregate(user_id))


def store_one(event: dict[str, Any]) -> int:
    event["occurred_at"] = datetime.fromisoformat(event["occurred_at"])
    return run_async(_store([event]))
