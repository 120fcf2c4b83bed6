"""The RQ job functions that lived here, by their old dotted paths (seed contract).

Each job is declared beside its domain now (`notifications/tasks.py`, `analytics/tasks.py`,
`videos/tasks.py`, `tasks/tasks.py`, `health/tasks.py`) and named by its new path. A job
queued before the move names `backend_app.core.rq_tasks.<function>`: RQ imports it from
here, and the registry hands over the same function, so it still runs (with the same
keyword arguments), and `enqueue_job("notifications", send_new_follower_notification_job, ...)`
keeps working for scripts.
"""

from __future__ import annotations

from typing import Any

from backend_app.tasks.models import TaskBackend
from backend_app.worker import registry


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    return registry.moved_target(TaskBackend.rq, name)
