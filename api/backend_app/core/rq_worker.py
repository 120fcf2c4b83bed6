"""The RQ worker classes, by the path the Procfile's `--worker-class` names
(`backend_app.core.rq_worker.BatchWorker`, `.PreloadedWorker`). They live in
`backend_app.worker` (rq_batch.py, rq_preloaded.py, rq_outage.py; the story in rq_worker.py)."""

from backend_app.worker.rq_worker import *  # noqa: F403
from backend_app.worker.rq_worker import __all__  # noqa: F401
