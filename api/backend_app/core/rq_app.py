"""The RQ queues and helpers, by their old import path (seed contract): `notification_queue`,
`analytics_queue`, `video_queue`, `enqueue_job`, `get_job_status`, `cancel_job`,
`check_rq_health`, `QUEUE_CONFIG` and the rest. They live in `backend_app.worker.rq_app`."""

from backend_app.core.redis import get_redis  # noqa: F401
from backend_app.worker.queues import *  # noqa: F403
from backend_app.worker.rq_app import *  # noqa: F403
from backend_app.worker.rq_app import _forget_finished_job  # noqa: F401
