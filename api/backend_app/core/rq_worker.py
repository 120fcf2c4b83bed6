"""Faster RQ workers for the high-volume queues (notifications, analytics).

A stock `rq worker` forks a work horse for every job, and the horse imports the job's
module afresh each time (the parent never imported it): here that costs about 0.6 s per
job. These classes keep the stock command and add `--worker-class`:

    # one process, no fork per job: for notifications and analytics
    rq worker notifications analytics --url redis://localhost:6379/0 --with-scheduler \\
        --worker-class backend_app.core.rq_worker.InProcessWorker

    # several such processes, one per core
    rq worker-pool notifications analytics -n 2 --url redis://localhost:6379/0 \\
        --worker-class backend_app.core.rq_worker.InProcessWorker

    # video: keep a work horse per job (a crash or a leak dies with the horse), but import
    # the job modules once in the parent so each fork starts warm
    rq worker video_processing --url redis://localhost:6379/0 \\
        --worker-class backend_app.core.rq_worker.PreloadedWorker

Safe with the database layer: `core.worker_runtime.run_async` keeps one event loop and
one set of engines per process, and drops (without closing) any inherited from a parent.
"""

from __future__ import annotations

import importlib
from typing import Any

from rq.worker import SimpleWorker, Worker

JOB_MODULES = ("backend_app.core.rq_tasks",)


def _preload_job_modules() -> None:
    for module in JOB_MODULES:
        importlib.import_module(module)


class InProcessWorker(SimpleWorker):
    """Runs each job in the worker process itself: no fork, modules and engines stay warm."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _preload_job_modules()


class PreloadedWorker(Worker):
    """The stock forking worker, with the job modules imported once before the first fork."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _preload_job_modules()
