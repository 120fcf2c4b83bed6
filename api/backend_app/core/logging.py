"""Plain, readable log lines for operators (one line per event, logger name included)."""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    if root.handlers:
        # uvicorn, celery or pytest configured logging already; keep theirs.
        return
    logging.basicConfig(level=level, format=LOG_FORMAT)


def configure_worker_logging(level: str = "INFO") -> None:
    """Our own log lines (task records, batches, pushes) in an RQ worker's output.

    `rq worker` sets up only its `rq.worker` logger; without this, everything under
    `backend_app` below WARNING is dropped. The root logger is left to RQ.
    """
    app_logger = logging.getLogger("backend_app")
    if app_logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    app_logger.addHandler(handler)
    app_logger.setLevel(level)
    app_logger.propagate = False
