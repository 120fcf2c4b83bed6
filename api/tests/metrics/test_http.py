"""HTTP request figures: counted in memory by each process, written to the multiprocess files
by `flush`, and nothing counted is lost when the process shuts down."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from backend_app.metrics.http import HttpFigures, flush_periodically, http_figures, http_metrics
from backend_app.metrics.multiprocess import metrics_directory
from tests.metrics.scrape import value


def written() -> str:
    """What a scrape of the shared files shows now."""
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=str(metrics_directory()))
    return generate_latest(registry).decode()


def test_requests_reach_the_shared_files_when_flushed_each_with_its_duration() -> None:
    figures = HttpFigures(http_metrics())
    route = {"method": "GET", "route": "/test/flushed", "status": "200"}
    before = written()
    figures.add("GET", "/test/flushed", 200, 0.004)
    figures.add("GET", "/test/flushed", 200, 0.2)
    figures.add("GET", "/test/flushed", 404, 0.001)
    # Counted, not written yet: a request pays for a dict append, not five locked file writes.
    assert value(written(), "jobplatform_http_requests_total", **route) == value(
        before, "jobplatform_http_requests_total", **route
    )

    figures.flush()

    after = written()
    grown = [
        value(after, name, **labels) - value(before, name, **labels)
        for name, labels in [
            ("jobplatform_http_requests_total", route),
            ("jobplatform_http_requests_total", {**route, "status": "404"}),
            ("jobplatform_http_request_duration_seconds_count", route),
            ("jobplatform_http_request_duration_seconds_bucket", {**route, "le": "0.005"}),
            ("jobplatform_http_request_duration_seconds_bucket", {**route, "le": "0.25"}),
        ]
    ]
    assert grown == [2, 1, 2, 1, 2]
    assert value(after, "jobplatform_http_request_duration_seconds_sum", **route) - value(
        before, "jobplatform_http_request_duration_seconds_sum", **route
    ) == pytest.approx(0.204)
    # A second flush writes nothing twice.
    figures.flush()
    assert value(written(), "jobplatform_http_requests_total", **route) == value(
        after, "jobplatform_http_requests_total", **route
    )


async def test_what_was_counted_is_written_when_the_process_shuts_down() -> None:
    route = {"method": "POST", "route": "/test/at-shutdown", "status": "201"}
    before = value(written(), "jobplatform_http_requests_total", **route)
    flushing = asyncio.create_task(flush_periodically())
    await asyncio.sleep(0)
    http_figures().add("POST", "/test/at-shutdown", 201, 0.01)

    flushing.cancel()  # what the lifespan does on shutdown, well within the flush interval
    await asyncio.gather(flushing, return_exceptions=True)

    assert value(written(), "jobplatform_http_requests_total", **route) == before + 1
