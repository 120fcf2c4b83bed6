"""analytics/service.py in this process: the buffer flush is one coroutine."""

from __future__ import annotations

import json

import pytest

from backend_app.analytics import buffer, service
from backend_app.core import rq_app
from devtools.devstack import LocalStack
from tests.run_async_calls import count_run_async


@pytest.mark.usefixtures("worker_code_in_this_process")
def test_a_flush_of_several_batches_is_one_coroutine(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_run_async(monkeypatch, service)
    redis = rq_app.get_redis()
    # Two batches: one a dead flush left behind, one waiting in the buffer.
    left = [buffer.new_event("page_view", user_id=None) for _ in range(2)]
    waiting = [buffer.new_event("page_view", user_id=None) for _ in range(3)]
    redis.rpush(f"{buffer.PROCESSING_PREFIX}dead-flush", *(json.dumps(e) for e in left))
    redis.rpush(buffer.EVENTS_KEY, *(json.dumps(e) for e in waiting))

    stored = service.flush()

    assert stored == 5
    assert len(calls) == 1
    assert stack.primary is not None
    assert stack.primary.psql("SELECT count(*) FROM analytics_events") == "5"
    assert redis.llen(buffer.EVENTS_KEY) == 0
