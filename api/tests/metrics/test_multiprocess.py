"""The Procfile's web line with WEB_CONCURRENCY=2 and no PROMETHEUS_MULTIPROC_DIR: whichever
worker answers a scrape reports both workers' requests, and a dead worker's count is kept."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from backend_app.metrics.http import FLUSH_INTERVAL_SECONDS
from backend_app.metrics.multiprocess import _alive, forget_dead_processes
from devtools.devstack import LocalStack
from tests.conftest import PROBE
from tests.metrics.scrape import value
from tests.processes import wait_until, web_server

HEALTH = {"method": "GET", "route": "/health", "status": "200"}
# Fresh connections until both workers have answered; the kernel spreads them quickly.
MAX_REQUESTS = 400


def health_count_of(directory: Path, pid: int) -> float:
    """The /health requests one worker process has written to the shared directory."""
    counters = directory / f"counter_{pid}.db"
    if not counters.exists():
        return 0.0
    for metric in MultiProcessCollector.merge([str(counters)]):
        for sample in metric.samples:
            if sample.name == "jobplatform_http_requests_total" and sample.labels == HEALTH:
                return sample.value
    return 0.0


def server_directory(server_pid: int) -> Path:
    """The private directory the server's workers share (named after the server's pid)."""
    (directory,) = Path(tempfile.gettempdir()).glob(f"jobplatform-metrics-{server_pid}-*")
    return directory


def app_processes(directory: Path) -> set[int]:
    """The pids of the app's processes that are or were running: each makes its
    requests-in-flight gauge at start."""
    return {int(path.stem.rsplit("_", 1)[1]) for path in directory.glob("gauge_livesum_*.db")}


async def scraped_health_count(base_url: str) -> float:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        answer = await client.get("/metrics", headers=PROBE)
    assert answer.status_code == 200, answer.text
    return value(answer.text, "jobplatform_http_requests_total", **HEALTH)


async def test_two_workers_give_one_combined_count(
    stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As out of the box: the server makes its own directory (this test process may have set one).
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    server, base_url = web_server(tmp_path, env={"WEB_CONCURRENCY": "2"})
    server.start()
    try:
        await wait_until(
            lambda: server.output().count("Application startup complete") >= 2, what="both workers started"
        )
        assert server.process is not None
        directory = server_directory(server.process.pid)
        # Not server.children(): the supervisor has a resource tracker child too.
        workers = sorted(app_processes(directory))
        assert len(workers) == 2, server.output()

        # The readiness probe's requests to /health are counted too, once each worker has
        # written its figures (every FLUSH_INTERVAL_SECONDS).
        await asyncio.sleep(2 * FLUSH_INTERVAL_SECONDS)
        expected = await scraped_health_count(base_url)
        sent = 0
        while min(health_count_of(directory, pid) for pid in workers) == 0 and sent < MAX_REQUESTS:
            # A new connection each time, so the kernel hands them to either process.
            async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
                assert (await client.get("/health")).status_code == 200
            sent += 1
        assert min(health_count_of(directory, pid) for pid in workers) > 0, f"one worker answered all {sent}"
        expected += sent
        await wait_until(
            lambda: sum(health_count_of(directory, pid) for pid in workers) == expected,
            seconds=5 * FLUSH_INTERVAL_SECONDS,
            what=f"both workers' {expected} requests in the shared files",
        )

        # Every scrape, whichever worker answers it, counts every request of both.
        assert [await scraped_health_count(base_url) for _ in range(6)] == [expected] * 6

        os.kill(workers[0], signal.SIGKILL)
        await wait_until(lambda: app_processes(directory) - set(workers), seconds=30, what="the dead worker replaced")
        # The dead worker's requests still count; its live gauges (in flight, pools) are forgotten.
        assert await scraped_health_count(base_url) == expected
        assert workers[0] not in app_processes(directory)
        assert health_count_of(directory, workers[0]) > 0
    finally:
        server.stop()


def _forget_in_a_process(directory: str, start: Any) -> None:
    start.wait()
    forget_dead_processes(Path(directory))


def test_processes_forgetting_the_same_dead_processes_at_once_do_not_fail(tmp_path: Path) -> None:
    """Every API process forgets the dead ones when it starts and at each scrape, so the
    workers of one server do it at the same moment: both see a dead process's file and one
    removes it first. (In CI this made a fresh two-worker server answer its first request
    with a 500.)"""
    # Many dead processes' gauges, as after a soak that SIGKILLs workers and servers: pids
    # past the kernel's largest, so that none comes alive meanwhile.
    first = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    for pid in range(first, first + 2000):
        assert not _alive(pid)
        for mode in ("livesum", "liveall"):
            (tmp_path / f"gauge_{mode}_{pid}.db").write_bytes(b"")
    context = multiprocessing.get_context("spawn")  # as uvicorn starts its workers
    start = context.Event()
    workers = [context.Process(target=_forget_in_a_process, args=(str(tmp_path), start)) for _ in range(4)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0] * len(workers)
    assert list(tmp_path.glob("gauge_live*")) == []
