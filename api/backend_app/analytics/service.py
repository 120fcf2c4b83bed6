"""Analytics: accepting events cheaply, storing them in batches, computing figures."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError

from backend_app.analytics import buffer, repository
from backend_app.core import rq_app
from backend_app.core.read_replica import AsyncWriteSession, get_database_router
from backend_app.core.worker_runtime import run_async

logger = logging.getLogger(__name__)

FLUSH_JOB = "backend_app.core.rq_tasks.flush_analytics_events_job"


def _queue_flush() -> None:
    rq_app.publish("analytics", FLUSH_JOB)


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
    """Worker side: drain the buffer into PostgreSQL in batches."""
    return buffer.drain(rq_app.get_redis(), lambda events: run_async(_store(events)))


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
