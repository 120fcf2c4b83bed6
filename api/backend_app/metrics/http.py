"""HTTP request metrics, counted by a pure ASGI middleware around the whole app and written to
the multiprocess files off the request path."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from functools import cache

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend_app.metrics.multiprocess import metrics_directory

logger = logging.getLogger(__name__)

# Requests no route took: unknown paths, and those answered before routing (a 413 for a body
# over its limit, a CORS preflight). One value, so scanners cannot grow the series.
UNMATCHED_ROUTE = "unmatched"
# Any other method a client invents is counted under one value, for the same reason.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"
# Seconds; the request path is mostly milliseconds, uploads and slow reads take longer.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class HttpMetrics:
    requests: Counter
    duration: Histogram
    in_flight: Gauge


@cache
def http_metrics() -> HttpMetrics:
    """The HTTP families, made once per process in multiprocess mode (registry=None: the
    scrape reads them from the files, see `multiprocess.py`)."""
    metrics_directory()
    labels = ("method", "route", "status")
    return HttpMetrics(
        requests=Counter(
            "jobplatform_http_requests_total",
            "HTTP requests answered, by method, route template and status.",
            labels,
            registry=None,
        ),
        duration=Histogram(
            "jobplatform_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by method, route template and status.",
            labels,
            buckets=DURATION_BUCKETS,
            registry=None,
        ),
        in_flight=Gauge(
            "jobplatform_http_requests_in_flight",
            "HTTP requests being handled, over all API processes (each as of its last flush).",
            registry=None,
            multiprocess_mode="livesum",
        ),
    )


# How often each API process writes its buffered request figures to the shared files (the
# process answering a scrape writes its own first), and how many requests it buffers at most
# before writing them at once.
FLUSH_INTERVAL_SECONDS = 1.0
MAX_BUFFERED_REQUESTS = 10_000


class HttpFigures:
    """This process's request figures, counted in memory and written to the multiprocess files
    by `flush`.

    Writing the files in the request itself (five memory-mapped values, each under a lock)
    cost about 14 µs of a 900 µs job read in the profile, a third of what metrics and JSON
    logs added together (issue 16's overhead goal is 5 %). Counting in a dict costs a fraction
    of that; `flush` writes the same values through the library's own calls, off the request
    path. Other processes' requests therefore reach a scrape up to FLUSH_INTERVAL_SECONDS late.
    """

    def __init__(self, metrics: HttpMetrics) -> None:
        self.metrics = metrics
        self.in_flight = 0
        self._durations: dict[tuple[str, str, int], list[float]] = {}
        self._buffered = 0
        # (method, route, status) -> its counter and histogram: label lookups are done once.
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def add(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        durations = self._durations.get(key)
        if durations is None:
            durations = self._durations[key] = []
        durations.append(seconds)
        self._buffered += 1
        if self._buffered >= MAX_BUFFERED_REQUESTS:
            self.flush()

    def flush(self) -> None:
        """Write what was counted since the last flush, and the requests in flight now. Runs
        on the event loop like the requests it counts, so none is added half-way."""
        self.metrics.in_flight.set(self.in_flight)
        durations, self._durations, self._buffered = self._durations, {}, 0
        for key, observed in durations.items():
            requests, duration = self._children(key)
            requests.inc(len(observed))
            for seconds in observed:
                duration.observe(seconds)

    def _children(self, key: tuple[str, str, int]) -> tuple[Counter, Histogram]:
        series = self._series.get(key)
        if series is None:
            method, route, status = key
            labels = (method, route, str(status))
            series = self._series[key] = (
                self.metrics.requests.labels(*labels),
                self.metrics.duration.labels(*labels),
            )
        return series


@cache
def http_figures() -> HttpFigures:
    """This process's buffer, shared by the middleware, the flushing task and the scrape."""
    return HttpFigures(http_metrics())


async def flush_periodically() -> None:
    """The API lifespan's background task: this process's requests reach the files within
    FLUSH_INTERVAL_SECONDS, whichever process answers the scrape."""
    try:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_SECONDS)
            _flush_logging_failure()
    finally:
        # Shutting down (the lifespan cancels this task): nothing counted is left behind.
        _flush_logging_failure()


def _flush_logging_failure() -> None:
    # A failed write (a full disk) costs those figures, never the API or its shutdown.
    try:
        http_figures().flush()
    except Exception:
        logger.exception("could not write the HTTP request metrics")


class HttpMetricsMiddleware:
    """Counts and times every HTTP request by method, route template (`/api/jobs/{job_id}`,
    never the raw path) and status, into this process's `HttpFigures`. Outermost but for the
    request id, so refusals by other middleware (413, preflights) are counted too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.figures = http_figures()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # An exception no handler took ends as a 500 (InternalErrorMiddleware, the server).
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        figures = self.figures
        figures.in_flight += 1
        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            figures.in_flight -= 1
            method = scope["method"]
            if method not in KNOWN_METHODS:
                method = OTHER_METHOD
            # The router leaves the route it chose in the scope (a Mount's template ends in /{path}).
            route = getattr(scope.get("route"), "path_format", None) or UNMATCHED_ROUTE
            figures.add(method, route, status, time.perf_counter() - started)
