"""Faster RQ workers for the high-volume queues (notifications, analytics), and workers
that outlive Redis outages and stop within a process manager's grace.

A stock `rq worker` forks a work horse for every job, and the horse imports the job's
module afresh each time (the parent never imported it): here that costs about 0.6 s per
job. These classes keep the stock command and add `--worker-class` (the Procfile's lines):

    # notifications and analytics: no fork, jobs taken and recorded in batches, one process
    # per core; `rq worker-pool` always runs a scheduler in each worker
    rq worker-pool notifications analytics -n 2 --url redis://localhost:6379/0 \\
        --worker-class backend_app.core.rq_worker.BatchWorker

    # video: keep a work horse per job (a crash or a leak dies with the horse), but import
    # the job modules once in the parent so each fork starts warm. `--with-scheduler` is
    # required: no other process schedules video_processing's retries
    rq worker video_processing --url redis://localhost:6379/0 --with-scheduler \\
        --worker-class backend_app.core.rq_worker.PreloadedWorker

    # one job at a time, no fork (each job's bookkeeping is its own Redis and SQL round trips)
    rq worker notifications analytics --url redis://localhost:6379/0 --with-scheduler \\
        --worker-class backend_app.core.rq_worker.InProcessWorker

Every queue needs a process that runs RQ's scheduler for it, or its retries and delayed
jobs wait in `rq:scheduled:<queue>` for ever (`rq_app.scheduler_lock_holders` and
`rq_app.overdue_scheduled` show it).

Redis outages (`OutageTolerantWorker`, `OutageTolerantScheduler`): no process exits or
needs a restart. Workers wait for Redis (attempts at most 5 s apart), register again if
Redis came back without their data, and the schedulers take their locks back; measured with
the Procfile's lines, locks, registrations and new jobs are back within about 5 s of Redis
(after a 5 s, 30 s or 120 s stop, with or without its data). An outage is logged as one
warning per process and one "back" line, not a traceback. A job whose bookkeeping the
outage interrupted is left to RQ's abandoned-job handling (or, if Redis lost it, to the
task records).

Stopping (honcho and compose send SIGTERM to the process group, honcho SIGKILLs 5 s later;
`rq worker-pool` passes the stop on as a SIGINT to each worker, which a pool's worker lets
go however late it comes; RQ would take one after a second for a cold stop): a
BatchWorker finishes the running job and hands the batch's other jobs back; a
PreloadedWorker gives a running horse 2 s, then kills it and puts its job back at
the front of its queue without spending a retry (a video job runs for minutes: waiting
would only end in a SIGKILL that leaves the horse running as an orphan). Both leave nothing
registered. The worker's pub/sub thread blocks the stop and alarm signals, so a signal
always reaches the main thread (one that reached the thread left the main thread blocked
in its dequeue until it returned: the SIGKILL seen on Ctrl-C of `make dev`).

Safe with the database layer: `worker.runtime.run_async` keeps one event loop and
one set of engines per process, and drops (without closing) any inherited from a parent.
"""

from backend_app.worker.rq_batch import BatchWorker
from backend_app.worker.rq_outage import InProcessWorker, OutageTolerantScheduler, OutageTolerantWorker
from backend_app.worker.rq_preloaded import PreloadedWorker, WorkHorseKilled

__all__ = [
    "BatchWorker",
    "InProcessWorker",
    "OutageTolerantScheduler",
    "OutageTolerantWorker",
    "PreloadedWorker",
    "WorkHorseKilled",
]
