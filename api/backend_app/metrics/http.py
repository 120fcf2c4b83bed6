"""HTTP request metrics, kept by a pure ASGI middleware around the whole app."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend_app.metrics.multiprocess import metrics_directory

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
            "HTTP requests being handled now, over all API processes.",
            registry=None,
            multiprocess_mode="livesum",
        ),
    )


class HttpMetricsMiddleware:
    """Counts and times every HTTP request by method, route template (`/api/jobs/{job_id}`,
    never the raw path) and status. Outermost but for the request id, so refusals by other
    middleware (413, preflights) are counted too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.metrics = http_metrics()
        # (method, route, status) -> its counter and histogram: label lookups are done once.
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

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

        in_flight = self.metrics.in_flight
        in_flight.inc()
        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            in_flight.dec()
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"]
        if method not in KNOWN_METHODS:
            method = OTHER_METHOD
        # The router leaves the route it chose in the scope (a Mount's template ends in /{path}).
        route = getattr(scope.get("route"), "path_format", None) or UNMATCHED_ROUTE
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:
            labels = (method, route, str(status))
            series = self._series[key] = (
                self.metrics.requests.labels(*labels),
                self.metrics.duration.labels(*labels),
            )
        requests, duration = series
        requests.inc()
        duration.observe(seconds)
