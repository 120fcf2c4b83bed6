"""RQ workers and schedulers that outlive Redis outages (see `worker/rq_worker.py` for the
whole story and the command lines)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from types import FrameType
from typing import Any

import redis.exceptions
from redis import Redis
from redis.client import Pipeline
from rq import worker_registration
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.job import Job
from rq.queue import Queue
from rq.scheduler import RQScheduler
from rq.utils import now
from rq.worker import BaseWorker, SimpleWorker

from backend_app.core.config import get_settings
from backend_app.core.logging import configure_worker_logging, for_request
from backend_app.core.tracing import RQ_SERVICE, flush_tracing, setup_tracing
from backend_app.worker import registry
from backend_app.worker.rq_app import HEARTBEAT_TTL_FIELD
from backend_app.worker.tracking import REQUEST_ID_KEY, start_job_span

logger = logging.getLogger(__name__)


# The errors of a Redis that is down, restarting or unreachable: waited out, never fatal.
REDIS_UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
# An idle worker beats this often; its key expires this long after its last beat.
IDLE_HEARTBEAT_SECONDS = 15
IDLE_HEARTBEAT_TTL = 60
# Registry maintenance (abandoned jobs back to their retries, stuck intermediate jobs, dead
# workers' entries) at least this often; RQ's default of 10 minutes leaves a job that an
# outage or a killed worker interrupted waiting that long.
MAINTENANCE_SECONDS = 60
# Signals only the worker's main thread may take (stop requests, RQ's job timeout alarm).
THREAD_MASKED_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGALRM}


def preload_job_modules() -> None:
    """A worker's start-up: its log format, its traces (when on), the job modules."""
    settings = get_settings()
    configure_worker_logging(settings.log_level, settings.log_format)
    setup_tracing(RQ_SERVICE, settings)
    registry.load_all()


class OutageTolerantScheduler(RQScheduler):
    """RQ's scheduler process, made to outlive Redis outages and to claim free locks quickly.

    RQ's own scheduler process dies on the first Redis error (two tracebacks) and its worker
    only restarts it at the next maintenance, every 10 minutes; a worker whose first attempt
    found the locks taken never runs a scheduler until then. This one runs for the worker's
    whole life: it retries a lost connection every second (one warning when Redis goes, one
    line when it is back), asks for every lock it does not hold every `lock_retry_seconds`,
    rewrites its registration each beat (it survives Redis losing its data), and stops when
    its worker is gone (a SIGKILLed worker must not leave a scheduler holding locks).
    """

    lock_retry_seconds = 5

    @property
    def should_reacquire_locks(self) -> bool:
        if self._queue_names == self.acquired_locks:
            return False
        if self.lock_acquisition_time is None:
            return True
        return (datetime.now() - self.lock_acquisition_time).total_seconds() >= self.lock_retry_seconds

    def work(self) -> None:
        self._install_signal_handlers()
        worker_pid = os.getppid()
        outage = _Outage(self.log, f"scheduler for {', '.join(sorted(self._queue_names))}")
        while not self._stop_requested and os.getppid() == worker_pid:
            try:
                if self.should_reacquire_locks:
                    self.acquire_locks()
                self.heartbeat()
                self.pid, self.last_heartbeat = os.getpid(), now()
                self.save()
                self.enqueue_scheduled_jobs()
                outage.over()
            except REDIS_UNAVAILABLE as error:
                outage.begun(error)
                # Held locks may have vanished with Redis's data: ask again once it is back.
                self._acquired_locks = set()
                self._scheduled_job_registries = []
                self.lock_acquisition_time = None
            time.sleep(self.interval)
        try:
            self.stop()
        except REDIS_UNAVAILABLE as error:
            self.log.warning("scheduler stopped without releasing its locks (Redis: %s); they expire", error)


class _Outage:
    """One warning when Redis becomes unreachable, one line when it answers again."""

    def __init__(self, log: logging.Logger, who: str) -> None:
        self.log = log
        self.who = who
        self.since: float | None = None

    def begun(self, error: BaseException) -> None:
        if self.since is None:
            self.since = time.monotonic()
            self.log.warning(
                "%s: Redis unreachable (%s: %s); retrying until it is back", self.who, type(error).__name__, error
            )

    def over(self) -> None:
        if self.since is not None:
            self.log.warning("%s: Redis is back after %.0f s", self.who, time.monotonic() - self.since)
            self.since = None


class _QuietReconnects(logging.Filter):
    """RQ logs an error for every reconnect attempt (main loop and pub/sub thread); the
    worker's `_Outage` says it once instead."""

    def __init__(self, outage: _Outage) -> None:
        super().__init__()
        self.outage = outage

    def filter(self, record: logging.LogRecord) -> bool:
        if "could not connect to Redis instance" not in str(record.msg):
            return True
        error = record.args[1] if isinstance(record.args, tuple) and len(record.args) > 1 else record.getMessage()
        self.outage.begun(error if isinstance(error, BaseException) else ConnectionError(str(error)))
        return False


class OutageTolerantWorker(BaseWorker):
    """What our worker classes add to RQ's so that a Redis outage never needs a human.

    - The scheduler (`--with-scheduler`, and always in `rq worker-pool`) is an
      `OutageTolerantScheduler`, started at once whatever the state of the locks, and
      started again whenever the worker finds it dead (checked at every heartbeat).
    - No Redis error ends the worker: the main loop waits for Redis (reconnect attempts at
      most `max_connection_wait_time` apart, instead of RQ's 60 s), a job whose bookkeeping
      met the outage is left to RQ's abandoned-job handling, and the outage is logged as
      one warning and one "back" line instead of a line per attempt or a traceback.
    - A heartbeat that finds the worker's key gone (Redis restarted without its data)
      registers the worker again (`rq:workers`, its queues' sets, its hash).
    - Registries are cleaned (abandoned jobs failed into their retries) every minute.
    - An idle worker beats every `IDLE_HEARTBEAT_SECONDS` and its key expires
      `IDLE_HEARTBEAT_TTL` seconds after its last beat, so a SIGKILLed worker stops being
      counted within a minute (RQ's default: 7 minutes). Each beat also records the TTL it
      promised (`heartbeat_ttl`), which `rq_app.live_workers` checks.
    """

    max_connection_wait_time = 5.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.maintenance_interval = min(self.maintenance_interval, MAINTENANCE_SECONDS)
        self._outage = _Outage(self.log, f"worker {self.name}")
        self._quiet_reconnects = _QuietReconnects(self._outage)
        self.log.addFilter(self._quiet_reconnects)
        self._pool_signal_to_come = False

    def _set_ip_address(self, connection: Redis) -> None:
        try:
            super()._set_ip_address(connection)
        except REDIS_UNAVAILABLE:
            self.ip_address = "unknown"  # started during an outage; `bootstrap` waits for Redis

    @property
    def dequeue_timeout(self) -> int:
        return min(IDLE_HEARTBEAT_SECONDS, max(1, self.worker_ttl - 15))

    # -- start, scheduler, stop -------------------------------------------------------------

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        while True:
            try:
                super().bootstrap(*args, **kwargs)
            except REDIS_UNAVAILABLE as error:
                self._outage.begun(error)
                time.sleep(self.max_connection_wait_time)
                continue
            self._outage.over()
            return

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        self.scheduler = OutageTolerantScheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
        )
        if not burst:
            self.scheduler.start()
            return
        if self.scheduler.acquire_locks():
            try:
                self.scheduler.register_birth()
                self.scheduler.enqueue_scheduled_jobs()
            finally:
                self.scheduler.release_locks()
                self.scheduler.register_death()

    def _keep_scheduler_running(self) -> None:
        scheduler = self.scheduler
        if scheduler is None or self.is_horse or self._stop_requested or scheduler.status == scheduler.Status.STOPPED:
            return
        process = scheduler._process
        if process is not None and process.is_alive():
            return
        self.log.warning(
            "worker %s: its scheduler process is gone (exit code %s); starting a new one",
            self.name,
            process.exitcode if process is not None else None,
        )
        scheduler.start()

    def subscribe(self) -> None:
        # The pub/sub thread must never take a stop or timeout signal: one delivered to it
        # leaves the main thread blocked in its dequeue, deaf to the stop until that returns.
        masked = signal.pthread_sigmask(signal.SIG_BLOCK, THREAD_MASKED_SIGNALS)
        try:
            super().subscribe()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, masked)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        # Under `rq worker-pool` every stop reaches a worker twice: the signal to the process
        # group (honcho, compose, Ctrl-C), then the SIGINT the pool passes on. RQ takes a
        # second signal for a cold stop (the running job fails) unless it comes within a
        # second, and a loaded pool passes its SIGINT on later than that. So a pool's worker
        # lets one extra signal go, whenever it comes; the next one is a cold stop.
        self._pool_signal_to_come = multiprocessing.parent_process() is not None
        super().request_stop(signum, frame)

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        if self._pool_signal_to_come:
            self._pool_signal_to_come = False
            self.log.info("worker %s: stop passed on by the pool; still finishing the running job", self.name)
            return
        super().request_force_stop(signum, frame)

    def stop_scheduler(self) -> None:
        if self.scheduler is not None:
            self.scheduler._status = self.scheduler.Status.STOPPED
        super().stop_scheduler()

    def teardown(self) -> None:
        try:
            super().teardown()
        except REDIS_UNAVAILABLE as error:
            self.log.warning("worker %s: stopped without unregistering (Redis: %s); its key expires", self.name, error)
        finally:
            # A worker of `rq worker-pool` ends with os._exit: atexit would not export them.
            flush_tracing()

    # -- the main loop's Redis calls --------------------------------------------------------

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        while True:
            try:
                return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            except REDIS_UNAVAILABLE as error:  # RQ retries only a ConnectionError of its dequeue call
                self._outage.begun(error)
                time.sleep(self.max_connection_wait_time)

    def check_for_suspension(self, burst: bool) -> None:
        try:
            super().check_for_suspension(burst)
        except REDIS_UNAVAILABLE as error:
            self._outage.begun(error)  # the dequeue that follows waits for Redis

    def run_maintenance_tasks(self) -> None:
        self._keep_scheduler_running()
        try:
            super().run_maintenance_tasks()
        except REDIS_UNAVAILABLE as error:
            self._outage.begun(error)  # tried again on the next loop

    def execute_job(self, job: Job, queue: Queue) -> None:
        with self._outliving_redis(job):
            super().execute_job(job, queue)

    def perform_job(self, job: Job, queue: Queue) -> bool:
        # In the work horse or the worker itself: the job's log lines, its failure callback's
        # included, name the request that recorded it (the relay put it in the job's meta).
        with for_request(job.meta.get(REQUEST_ID_KEY)):
            running = start_job_span(job)
            succeeded = False
            try:
                succeeded = super().perform_job(job, queue)
                return succeeded
            finally:
                if running is not None:
                    running.end(failed=not succeeded)
                    if self.is_horse:
                        flush_tracing()  # a work horse ends with os._exit, before any export

    @contextmanager
    def _outliving_redis(self, job: Job) -> Iterator[None]:
        """Redis went away while a job was handled: the worker goes on (its next dequeue waits
        for Redis); the job is left where the outage found it, to RQ's abandoned-job handling."""
        try:
            yield
        except REDIS_UNAVAILABLE as error:
            self._outage.begun(error)
            self.log.warning(
                "worker %s: lost Redis while handling job %s; RQ's abandoned-job handling takes it from here",
                self.name,
                job.id,
            )

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        timeout = timeout or IDLE_HEARTBEAT_TTL
        if pipeline is not None:
            super().heartbeat(timeout, pipeline=pipeline)
            pipeline.hset(self.key, HEARTBEAT_TTL_FIELD, timeout)
            return
        self._keep_scheduler_running()
        try:
            with self.connection.pipeline() as beat:
                # Both the set and the whole hash: Redis may have lost either (restarted
                # without its data; down longer than the hash's TTL), and a beat on a
                # pipeline (a batch's) may have recreated a partial hash since.
                beat.sismember(self.redis_workers_keys, self.key)
                beat.hexists(self.key, "birth")
                super().heartbeat(timeout, pipeline=beat)
                beat.hset(self.key, HEARTBEAT_TTL_FIELD, timeout)
                in_set, whole = beat.execute()[:2]
            if not (in_set and whole):
                self._register_again(timeout)
        except REDIS_UNAVAILABLE as error:
            self._outage.begun(error)
            return
        self._outage.over()

    def maintain_heartbeats(self, job: Job) -> None:
        self._keep_scheduler_running()
        try:
            super().maintain_heartbeats(job)
            with self.connection.pipeline() as check:
                check.sismember(self.redis_workers_keys, self.key)
                check.hexists(self.key, "birth")
                check.exists(job.key)
                in_set, whole, job_kept = check.execute()
            if not (in_set and whole):
                self._register_again(self.job_monitoring_interval + 60)
            if not job_kept:
                self._restore_running_job(job)
        except REDIS_UNAVAILABLE as error:
            self._outage.begun(error)  # the horse goes on; the next beat tries again
            return
        self._outage.over()

    def _restore_running_job(self, job: Job) -> None:
        """Redis lost the job this worker is running (restarted without its data): write it
        back as this worker knows it: its hash (status started), its place in the started
        registry and this worker's `current_job`. Otherwise nothing in Redis would say it
        runs: the task reconciler would publish it again beside this run, and if this worker
        died now, RQ's abandoned-job handling would have nothing to fail into its retries."""
        with self.connection.pipeline() as pipeline:
            job.save(pipeline=pipeline)
            # The copy this process holds may predate its start (the status it was dequeued with).
            job.prepare_for_execution(self.name, pipeline=pipeline)
            if self.execution is not None:
                ttl = self.get_heartbeat_ttl(job)
                job.started_job_registry.add_execution(self.execution, ttl=ttl, pipeline=pipeline)
            self.set_current_job_id(job.id, pipeline=pipeline)
            pipeline.execute()
        self.log.warning("worker %s: Redis had lost job %s, which it is running; wrote it back", self.name, job.id)

    def _register_again(self, ttl: int) -> None:
        """Redis lost this worker's registration (restarted without its data): write it again."""
        with self.connection.pipeline() as pipeline:
            pipeline.hset(self.key, mapping={**self.serialize(), "state": self.get_state(), HEARTBEAT_TTL_FIELD: ttl})
            worker_registration.register(self, pipeline)
            pipeline.expire(self.key, ttl)
            pipeline.execute()
        self.log.warning(
            "worker %s: its registration was gone from Redis (data lost, or expired in an outage); registered again",
            self.name,
        )


class InProcessWorker(OutageTolerantWorker, SimpleWorker):
    """Runs each job in the worker process itself: no fork, modules and engines stay warm."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        preload_job_modules()
