"""The Celery app, by its old import path: `celery -A backend_app.core.celery_app ...` (the
Procfile's commands) and `from backend_app.core.celery_app import celery_app` keep working.
It lives in `backend_app.worker.celery_app`."""

from backend_app.worker.celery_app import (  # noqa: F401
    app,
    celery_app,
    create_celery_app,
    refuse_open_flower_in_production,
)
from backend_app.worker.queues import CELERY_QUEUES, EMAIL_QUEUE  # noqa: F401
