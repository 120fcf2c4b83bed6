"""Canary tasks: proof that workers are consuming, not only alive.

A worker can stay registered yet stop taking work (a known failure after a Redis
reconnect). The health check keeps one tiny task in flight per queue through the real
queues; the worker that runs it stamps Redis. A canary older than CANARY_TIMEOUT_SECONDS
means nobody is consuming that queue.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from redis import Redis

# How often a new canary is sent once the previous one came back.
CANARY_INTERVAL_SECONDS = 5.0
# A canary state untouched for this many timeouts is from an earlier run, not a stall.
STALE_AFTER_TIMEOUTS = 10


def canary_key(backend: str, queue: str) -> str:
    return f"health:canary:{backend}:{queue}"


def mark_canary_done(redis: Redis, backend: str, queue: str, canary_id: str) -> None:
    """Called by the canary task on the worker."""
    redis.hset(canary_key(backend, queue), mapping={"done_id": canary_id, "done_at": repr(time.time())})


def check_canary(
    redis: Redis, backend: str, queue: str, send: Callable[[str], None], *, timeout: float
) -> dict[str, Any]:
    """Report the last canary's fate and send the next one when it is due."""
    key = canary_key(backend, queue)
    state = {k.decode(): v.decode() for k, v in redis.hgetall(key).items()}
    now = time.time()
    sent_at = float(state["sent_at"]) if "sent_at" in state else None
    done_at = float(state["done_at"]) if "done_at" in state else None
    last_sent = float(state.get("last_sent_at", sent_at or 0))
    outstanding = sent_at is not None and state.get("done_id") != state.get("sent_id")
    if outstanding and now - last_sent > STALE_AFTER_TIMEOUTS * timeout:
        # Nobody has checked for a long time (the service was stopped): start afresh
        # instead of blaming the workers for a canary sent before they were started.
        sent_at = done_at = None
        outstanding = False
    waiting_for = now - sent_at if outstanding and sent_at is not None else 0.0

    report: dict[str, Any] = {"last_round_trip_ms": None, "waiting_seconds": round(waiting_for, 3)}
    if not outstanding and sent_at is not None and done_at is not None:
        report["last_round_trip_ms"] = round((done_at - sent_at) * 1000, 2)
    if outstanding and waiting_for > timeout:
        report["consuming"] = False
    elif done_at is None:
        report["consuming"] = None  # no canary has come back yet: not known
    else:
        report["consuming"] = True

    due = sent_at is None or (not outstanding and now - sent_at >= CANARY_INTERVAL_SECONDS)
    replace_lost = outstanding and now - last_sent > timeout
    if due or replace_lost:
        canary_id = uuid.uuid4().hex
        # A replacement for a lost canary keeps the first one's send time: the queue stays
        # "not consuming" until a canary actually comes back. At most one per timeout.
        first_sent = sent_at if replace_lost and sent_at is not None else now
        if sent_at is None:
            # A fresh start: an earlier run's answer says nothing about these workers.
            redis.hdel(key, "done_at", "done_id")
        redis.hset(key, mapping={"sent_id": canary_id, "sent_at": repr(first_sent), "last_sent_at": repr(now)})
        send(canary_id)
    return report
