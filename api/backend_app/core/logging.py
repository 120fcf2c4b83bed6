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
