"""The Celery tasks that lived here, by their old import path (seed contract).

Each task is declared beside its domain now (`emails/tasks.py`, `notifications/tasks.py`,
`outbox/tasks.py`, `tasks/tasks.py`, `health/tasks.py`) and keeps its Celery name
`backend_app.core.celery_tasks.<function>`, so messages queued before the move still run.
`from backend_app.core.celery_tasks import send_welcome_email` gives the Celery task
(`.delay(...)` works), resolved through the task registry on first use.
"""

from __future__ import annotations

from typing import Any

from backend_app.tasks.models import TaskBackend
from backend_app.worker import registry
from backend_app.worker.celery_app import celery_app  # noqa: F401  (the tasks need their app)


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    return registry.moved_target(TaskBackend.celery, name)
