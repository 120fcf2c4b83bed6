"""The figures workers and the relay add to Redis, read back as Prometheus families."""

from __future__ import annotations

from redis import Redis

from backend_app.metrics.shared import (
    FAMILIES,
    OUTBOX_PUBLISH_FAILURES,
    TASK_RUN_DURATION,
    SharedMetrics,
)
from backend_app.worker import rq_app
from devtools.devstack import LocalStack, free_port
from tests.metrics.scrape import shared_exposition as exposition
from tests.metrics.scrape import value, values


def forget_shared_figures(redis: Redis) -> None:
    redis.delete(*(family.key for family in FAMILIES))


def test_two_processes_observations_add_up_into_one_histogram_and_counter(stack: LocalStack) -> None:
    redis = rq_app.get_redis()
    forget_shared_figures(redis)
    worker_a, worker_b = SharedMetrics(), SharedMetrics()
    labels = ("rq", "notifications", "send_push", "succeeded")
    for seconds in (0.003, 0.02, 0.02, 7.0):
        worker_a.observe(TASK_RUN_DURATION, labels, seconds)
    worker_b.observe(TASK_RUN_DURATION, labels, 4000.0)  # past the last bucket
    worker_b.inc(OUTBOX_PUBLISH_FAILURES, ("celery", "emails", "broker"), 3)
    assert worker_a.flush(redis)
    assert worker_b.flush(redis)

    scraped = exposition(redis)
    run = {"backend": "rq", "queue": "notifications", "task": "send_push", "outcome": "succeeded"}
    assert value(scraped, "jobplatform_task_run_duration_seconds_bucket", **run, le="0.005") == 1
    assert value(scraped, "jobplatform_task_run_duration_seconds_bucket", **run, le="0.025") == 3
    assert value(scraped, "jobplatform_task_run_duration_seconds_bucket", **run, le="10.0") == 4
    assert value(scraped, "jobplatform_task_run_duration_seconds_bucket", **run, le="1800.0") == 4
    assert value(scraped, "jobplatform_task_run_duration_seconds_bucket", **run, le="+Inf") == 5
    assert value(scraped, "jobplatform_task_run_duration_seconds_count", **run) == 5
    assert abs(value(scraped, "jobplatform_task_run_duration_seconds_sum", **run) - 4007.043) < 1e-6
    failures = {"backend": "celery", "queue": "emails", "reason": "broker"}
    assert value(scraped, "jobplatform_outbox_publish_failures_total", **failures) == 3

    # A second flush adds only what came since.
    worker_a.observe(TASK_RUN_DURATION, labels, 0.02)
    assert worker_a.flush(redis)
    assert value(exposition(redis), "jobplatform_task_run_duration_seconds_count", **run) == 6


def test_figures_counted_while_redis_is_away_reach_it_once_it_is_back(stack: LocalStack) -> None:
    redis = rq_app.get_redis()
    forget_shared_figures(redis)
    away = Redis(port=free_port(), socket_connect_timeout=0.5)
    relay = SharedMetrics()
    failures = ("rq", "analytics", "broker")
    relay.inc(OUTBOX_PUBLISH_FAILURES, failures)
    assert not relay.flush(away)
    relay.inc(OUTBOX_PUBLISH_FAILURES, failures)
    assert not relay.flush(away)
    assert values(exposition(redis), "jobplatform_outbox_publish_failures_total") == {}

    assert relay.flush(redis)
    scraped = exposition(redis)
    assert (
        value(scraped, "jobplatform_outbox_publish_failures_total", backend="rq", queue="analytics", reason="broker")
        == 2
    )
    assert relay.flush(redis)  # nothing left to add twice
    assert (
        value(
            exposition(redis),
            "jobplatform_outbox_publish_failures_total",
            backend="rq",
            queue="analytics",
            reason="broker",
        )
        == 2
    )
