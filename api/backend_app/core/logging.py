"""Plain, readable log lines for operators (one line per event, logger name included), or
JSON lines (`LOG_FORMAT=json`) for a log collector. Either way each line names the request
it was written for (`X-Request-ID`), or `-` outside a request: in the API, and also in the
relay and the workers while they handle a task that request recorded."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s]: %(message)s"
NO_REQUEST_ID = "-"
# The longest request id `RequestIdMiddleware` accepts, and so what task records must hold.
MAX_REQUEST_ID_LENGTH = 128
# Set by `RequestIdMiddleware` for the duration of one request, and by the relay and the
# workers (`for_request`) while they handle a task recorded during one.
request_id_var: ContextVar[str] = ContextVar("request_id", default=NO_REQUEST_ID)


def current_request_id() -> str | None:
    """The id of the request being handled, None outside one (what task records store)."""
    request_id = request_id_var.get()
    return None if request_id == NO_REQUEST_ID else request_id


@contextmanager
def for_request(request_id: str | None) -> Iterator[None]:
    """Log lines written inside name `request_id` (`-` for None); the previous id after."""
    token = request_id_var.set(request_id or NO_REQUEST_ID)
    try:
        yield
    finally:
        request_id_var.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds `record.request_id`: the current request's id, `-` outside a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def make_formatter(log_format: str = "text") -> logging.Formatter:
    if log_format == "json":
        # time, level, logger, message, request_id, and exc_info when there is one.
        return JsonFormatter(
            ["asctime", "levelname", "name", "message", "request_id"],
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    return logging.Formatter(LOG_FORMAT)


def _handler(log_format: str) -> logging.Handler:
    handler = logging.StreamHandler()
    handler.setFormatter(make_formatter(log_format))
    handler.addFilter(RequestIdFilter())
    return handler


# Uvicorn's access lines ("GET /api/jobs HTTP/1.1" 200), one per request.
ACCESS_LOGGER = "uvicorn.access"


def configure_logging(level: str | int = "INFO", log_format: str = "text") -> None:
    root = logging.getLogger()
    if root.handlers:
        # celery or pytest configured logging already; keep theirs.
        return
    root.addHandler(_handler(log_format))
    root.setLevel(level)
    _access_lines_in_our_format(log_format)


def _access_lines_in_our_format(log_format: str) -> None:
    """Uvicorn writes its access lines with its own handler: no request id, never JSON. It
    writes each while the response starts, inside the request (where the request id is set),
    so through our handler the line names its request like every other line of it. Left alone
    when uvicorn runs without an access log (`--no-access-log` leaves the logger no handler)."""
    access = logging.getLogger(ACCESS_LOGGER)
    if access.handlers:
        access.handlers = [_handler(log_format)]


# RQ's worker lines (started, listening, "Successfully completed job ...").
RQ_WORKER_LOGGER = "rq.worker"


def configure_worker_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Our own log lines (task records, batches, pushes) in an RQ worker's output, and RQ's
    own in the same format.

    `rq worker` sets up only its `rq.worker` logger; without this, everything under
    `backend_app` below WARNING is dropped. The root logger is left to RQ. RQ's lines go
    through our handler too, so they are JSON with LOG_FORMAT=json, and those RQ writes while
    a job runs (a single-job worker's completion and failure lines) name the request that
    recorded it; its line on taking a job from the queue comes before the job's request is
    known and says `-`.
    Whichever of RQ and us comes first, `rq.worker` ends with our handler alone: RQ adds its
    own only to a logger that has none.
    """
    app_logger = logging.getLogger("backend_app")
    if app_logger.handlers or logging.getLogger().handlers:
        return
    app_logger.addHandler(_handler(log_format))
    app_logger.setLevel(level)
    app_logger.propagate = False
    logging.getLogger(RQ_WORKER_LOGGER).handlers = [_handler(log_format)]
