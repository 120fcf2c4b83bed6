"""The video worker: a work horse per job, forked from a parent that imported the job
modules once (see `worker/rq_worker.py`)."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time
from typing import Any

from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.worker import Worker

from backend_app.worker.rq_outage import (
    OutageTolerantWorker,
    preload_job_modules,
)
from backend_app.worker.tracking import return_to_queue

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent dies


def _die_with_parent(parent_pid: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    # CDLL(None): the symbols already loaded into this process, libc's prctl among them.
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        logger.warning("work horse cannot ask to die with its worker (errno %d)", ctypes.get_errno())
        return
    if os.getppid() != parent_pid:
        os._exit(1)  # the worker died before the request took effect


class WorkHorseKilled(Exception):
    """A work horse ended without finishing its job (killed, crashed, out of memory)."""


class PreloadedWorker(OutageTolerantWorker, Worker):
    """The stock forking worker, with the job modules imported once before the first fork.

    Stopping (SIGTERM, as honcho and compose do) while a horse runs: the horse gets
    `shutdown_grace_seconds` to finish; then it is killed and its job goes back to the front
    of its queue at once, without spending one of its retries (the interrupted run still
    counts as an attempt on the task record, which `TASK_MAX_ATTEMPTS` bounds). A video job
    can take minutes, far longer than a process manager waits (honcho: 5 s, then SIGKILL,
    which would leave the horse running on as an orphan and the job to RQ's abandoned-job
    handling); starting the job again later loses nothing, as a job must be safe to re-run.

    A horse that dies on its own (killed, out of memory) is a failure of its job as in RQ,
    retried on the queue's schedule; its failure callback runs too, so the task record says
    `retrying` rather than `started`.
    """

    shutdown_grace_seconds = 2.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        preload_job_modules()
        self._horse_deadline: float | None = None
        self._handing_back_job_id: str | None = None
        self._worker_pid = os.getpid()

    def handle_warm_shutdown_request(self) -> None:
        super().handle_warm_shutdown_request()
        if self.horse_pid:
            self._horse_deadline = time.monotonic() + self.shutdown_grace_seconds
            self.job_monitoring_interval = 1  # look at the horse every second from now on
            if signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, signal.SIG_IGN, None):
                signal.alarm(1)  # cut short the monitoring wait already under way

    def maintain_heartbeats(self, job: Job) -> None:
        if self._horse_deadline is not None and self.horse_pid and time.monotonic() >= self._horse_deadline:
            self.log.warning(
                "worker %s: stopping; job %s did not finish within %.0f s, putting it back",
                self.name,
                job.id,
                self.shutdown_grace_seconds,
            )
            self._handing_back_job_id = job.id
            self.kill_horse()
            return
        super().maintain_heartbeats(job)

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        # The horse sits in a process group of its own, so a signal to the worker's group
        # (a process manager stopping it) does not reach it, and a SIGKILL of the worker
        # would leave it running on, an orphan transcoding beside the job's retry. Die with
        # the worker instead (Linux; elsewhere the orphan remains possible).
        _die_with_parent(self._worker_pid)
        super().main_work_horse(job, queue)

    def handle_work_horse_killed(self, job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        if job.id == self._handing_back_job_id:
            return
        error = WorkHorseKilled(f"work horse ended without finishing the job (waitpid status {ret_val})")
        try:
            job.execute_failure_callback(self.death_penalty_class, WorkHorseKilled, error, None)
        except Exception as callback_error:
            self.log.warning("job %s: its failure callback failed (%s)", job.id, callback_error)

    def handle_job_failure(
        self, job: Job, queue: Queue, started_job_registry: Any = None, exc_string: str = ""
    ) -> None:
        if job.id != self._handing_back_job_id:
            super().handle_job_failure(job, queue, started_job_registry, exc_string)
            return
        self._handing_back_job_id = None
        with self.connection.pipeline() as pipeline:
            self.cleanup_execution(job, pipeline=pipeline)
            job.set_status(JobStatus.QUEUED, pipeline=pipeline)
            queue.push_job_id(job.id, pipeline=pipeline, at_front=True)
            self.set_current_job_id(None, pipeline=pipeline)
            pipeline.execute()
        # Its record goes back to queued, the interrupted start not counted, as BatchWorker's
        # hand-back does (a long stop would otherwise leave it `started`, to be swept dead).
        return_to_queue([job.id])
        self.log.info("worker %s: job %s is back at the front of %s", self.name, job.id, queue.name)
