"""Running async code from worker code: one loop per process, interruptions end the call."""

from __future__ import annotations

import asyncio

import pytest
from rq.timeouts import JobTimeoutException

from backend_app.core.worker_runtime import run_async

pytestmark = pytest.mark.usefixtures("worker_code_in_this_process")


def _time_is_up() -> None:
    raise JobTimeoutException("Task exceeded maximum timeout value (1 seconds)")


def test_a_timeout_raised_inside_a_loop_callback_ends_the_call_and_cancels_the_work() -> None:
    # RQ's timeout is a signal; when it lands in one of the loop's own callbacks asyncio
    # would only log it, and the job would run on with no timeout left.
    outcome: list[str] = []

    async def long_job() -> None:
        asyncio.get_running_loop().call_soon(_time_is_up)
        try:
            await asyncio.sleep(30)
            outcome.append("finished")
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    with pytest.raises(JobTimeoutException, match="maximum timeout"):
        run_async(long_job())
    assert outcome == ["cancelled"]
    assert run_async(asyncio.sleep(0, result="next job")) == "next job"


def test_other_errors_in_callbacks_are_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    def broken_callback() -> None:
        raise ValueError("a callback bug")

    async def job() -> str:
        asyncio.get_running_loop().call_soon(broken_callback)
        await asyncio.sleep(0.05)
        return "done"

    assert run_async(job()) == "done"
    assert "a callback bug" in caplog.text
