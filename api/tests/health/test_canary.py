"""Canary bookkeeping against a real Redis: a stalled queue stays reported until a canary returns."""

from __future__ import annotations

import time

from backend_app.core.rq_app import get_redis
from backend_app.health.canary import check_canary, mark_canary_done
from devtools.devstack import LocalStack


def test_a_lost_canary_keeps_the_queue_not_consuming_until_one_comes_back(stack: LocalStack) -> None:
    redis = get_redis()
    sent: list[str] = []

    first = check_canary(redis, "rq", "notifications", sent.append, timeout=0.2)
    assert first["consuming"] is None
    assert len(sent) == 1

    time.sleep(0.3)
    stalled = check_canary(redis, "rq", "notifications", sent.append, timeout=0.2)
    again = check_canary(redis, "rq", "notifications", sent.append, timeout=0.2)

    assert stalled["consuming"] is False
    assert again["consuming"] is False, "a replacement canary must not make a stalled queue look healthy"
    assert len(sent) == 2, "one replacement per timeout, not one per check"

    mark_canary_done(redis, "rq", "notifications", sent[-1])
    recovered = check_canary(redis, "rq", "notifications", sent.append, timeout=0.2)
    assert recovered["consuming"] is True
    assert recovered["last_round_trip_ms"] is not None


def test_a_canary_left_from_an_earlier_run_is_not_blamed_on_todays_workers(stack: LocalStack) -> None:
    redis = get_redis()
    long_ago = repr(time.time() - 3600)
    redis.hset(
        "health:canary:celery:emails",
        mapping={
            "sent_id": "old",
            "sent_at": long_ago,
            "last_sent_at": long_ago,
            "done_id": "older",
            "done_at": long_ago,
        },
    )
    sent: list[str] = []

    report = check_canary(redis, "celery", "emails", sent.append, timeout=30)

    assert report["consuming"] is None
    assert len(sent) == 1
