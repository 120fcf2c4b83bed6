"""Task tracking, by its old path: RQ jobs queued before the move name
`backend_app.tasks.tracking.rq_job_failed` as their failure callback. It lives in
`backend_app.worker.tracking`."""

from backend_app.worker.tracking import *  # noqa: F403
from backend_app.worker.tracking import DB_POSITION_KEY, TrackedTask, rq_job_failed, tracked_job  # noqa: F401
