"""The worker runtime, by its old path: it lives in `backend_app.worker.runtime`."""

from backend_app.worker.runtime import *  # noqa: F403
from backend_app.worker.runtime import run_async, run_async_when_database_answers, shutdown  # noqa: F401
