"""Whole-stack fault soak: nothing the API accepted may be lost, duplicated or left stuck.

    cd api && ../.venv/bin/python -m bench.soak --minutes 10

What it does, in order:

1. Starts a PostgreSQL primary with two streaming replicas and a Redis (`LocalStack`, on free
   ports in a temporary folder, migrated; Redis without persistence, so every Redis stop is
   a crash that loses its data), an SMTP server that records what it receives (aiosmtpd, in
   this process) and a push endpoint for `PUSH_PROVIDER=webhook` (records each push, 200).
2. Checks `make dev`'s process manager once: `honcho -f Procfile start`, waits for the API,
   sends Ctrl-C (SIGINT to honcho's process group, as a terminal does) and requires every
   process to stop within honcho's 5 s grace (none SIGKILLed) and no RQ worker to stay
   registered in Redis (`--no-honcho-check` skips it).
3. Runs the Procfile's own lines (parsed from ../Procfile at run time, never copied) under
   supervisord, one program per line, `bash -c '<line>'` from the repository root with
   `autorestart=true`: a process that dies is started again, as compose's `restart:` policy
   does. Honcho cannot be used for this part: it stops everything when one process exits.
4. Drives a steady mixed load through the public HTTP API (registrations, sign-ins, password
   resets, job posts, applications, follows, posts, likes, comments, messages, analytics
   events, small real video uploads) and records what was accepted (see bench/soak_load.py).
5. Injects faults on a schedule spread over the run, every kind once per round (two rounds
   in 10 minutes): Redis stopped for 5 s, 30 s and a long outage (120 s from 10 minutes up);
   Redis restarted with its data gone; SIGKILL of the relay, the Celery worker parent, one
   Celery pool child, an RQ work horse (the video worker's child, while a video job runs),
   the whole RQ worker pool (parent and children), the RQ video worker, celery beat and the
   API; a replica stopped for a while; the primary restarted. After each fault a canary
   through the affected path (a registration's welcome email, a follow's push, an analytics
   event, a video, an API write) measures the time until that path works again, and until
   every task that was unfinished in the affected queues when the fault ended has succeeded
   (the interrupted work, not only new work). After a Redis fault it also records whether
   /health/queues still calls Redis unreachable once Redis is back.
6. Lets the system drain (bounded by --drain-minutes, ending as soon as everything expected
   arrived and no task is unfinished), then checks from the database, the SMTP inbox and the
   push endpoint (bench/soak_check.py), prints the table and exits non-zero when anything
   was lost, duplicated or stuck, a task ended failed or dead, a process needed a manual
   restart (supervisord no longer runs it), a process exited on its own (not one of the
   soak's SIGKILLs: under `make dev` that stops every process), the API answered a 5xx
   other than a 503 with Retry-After, or the honcho check failed.
   The per-process logs stay in the printed folder on failure or when one has a traceback
   (their counts per process are in the table).

The run lasts at least --minutes: faults follow each other as soon as the previous one's
paths recovered (bounded by a 120 s recovery timeout) and the time left allows, and the
load goes on until the last fault has recovered.

Settings: every process gets the stack's DATABASE_URL, DATABASE_URL_READ and REDIS_URL,
MEDIA_ROOT (a temporary folder), SMTP_HOST/SMTP_PORT/SMTP_USE_TLS=false (the recording
server), PUSH_PROVIDER=webhook with PUSH_WEBHOOK_URL (the push endpoint), API_PORT and
FLOWER_PORT (free ports), BASE_URL. Everything else keeps its production default, except
these, which the environment may override (set them before running the soak):

    CELERY_VISIBILITY_TIMEOUT=60    a message held by a SIGKILLed Celery parent comes back
                                    after this long; the default (2 h) is beyond any drain
    TASK_RETRY_BACKOFF_MAX=30       must stay below the visibility timeout (settings check)
    CELERY_TASK_SOFT_TIME_LIMIT=40, CELERY_TASK_TIME_LIMIT=50
                                    a running task must end before its message could be
                                    given to another worker by the visibility timeout

The report prints the settings used. `run_soak(...)` is the same run as a function
(tests/test_soak.py runs a short one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.soak_check import Verdict, check
from bench.soak_load import Load
from bench.soak_processes import (
    HonchoCheck,
    Supervisor,
    alive,
    children_of,
    connected_to,
    descendants_of,
    honcho_check,
    process_environment,
    sigkill,
)
from bench.soak_sinks import PushEndpoint, SmtpInbox

# Lets the soak read /health/queues' details (Redis reachable, workers), as a probe would.
SOAK_PROBE_TOKEN = "soak-probe-token"  # noqa: S105 (a local test value)
PROBE_HEADERS = {"Authorization": f"Bearer {SOAK_PROBE_TOKEN}"}

SOAK_DEFAULTS = {
    "CELERY_VISIBILITY_TIMEOUT": "60",
    "TASK_RETRY_BACKOFF_MAX": "30",
    "CELERY_TASK_SOFT_TIME_LIMIT": "40",
    "CELERY_TASK_TIME_LIMIT": "50",
}

REDIS_KINDS = ("redis_stop_5s", "redis_stop_30s", "redis_stop_long", "redis_data_loss")
# The queues whose in-flight tasks a fault interrupts (None: every queue).
FAULT_QUEUES: dict[str, tuple[str, ...] | None] = {
    **dict.fromkeys(REDIS_KINDS),
    "kill_relay": None,
    "kill_celery_parent": ("emails",),
    "kill_celery_child": ("emails",),
    "kill_rq_horse": ("video_processing",),
    "kill_rq_pool": ("notifications", "analytics"),
    "kill_rq_video": ("video_processing",),
}
# One round, interleaved so that no two faults of a kind of process follow each other.
ROUND = (
    "kill_relay",
    "redis_stop_5s",
    "kill_celery_child",
    "kill_api",
    "redis_stop_30s",
    "kill_rq_horse",
    "replica_stop",
    "kill_celery_parent",
    "redis_data_loss",
    "kill_rq_pool",
    "kill_beat",
    "primary_restart",
    "kill_rq_video",
    "redis_stop_long",
)
# The paths each fault kind touches: its recovery is the slowest of their canaries.
# "inflight": every task unfinished when the fault ended (in the queues it touched) finishes:
# the interrupted and the delayed work is done, not only new work.
CANARIES = {
    **{kind: ("email", "push", "analytics", "video", "inflight") for kind in REDIS_KINDS},
    "kill_relay": ("email", "push", "inflight"),
    "kill_celery_parent": ("email", "inflight"),
    "kill_celery_child": ("email", "inflight"),
    "kill_rq_horse": ("video", "inflight"),
    "kill_rq_pool": ("push", "analytics", "inflight"),
    "kill_rq_video": ("video", "inflight"),
    "kill_beat": ("beat",),
    "kill_api": ("api",),
    "replica_stop": ("api",),
    "primary_restart": ("api", "email", "push"),
}


@dataclass(frozen=True)
class Fault:
    kind: str
    seconds: float = 0.0  # how long the outage lasts (Redis, replica)


def plan(minutes: float, kinds: list[str] | None = None) -> list[Fault]:
    """Every fault kind (or those of `kinds`) once per round; 10 minutes make two rounds,
    2-3 minutes one."""
    rounds = max(1, round(minutes / 5))
    long_outage = min(120.0, max(30.0, minutes * 12))
    replica_outage = min(20.0, max(5.0, minutes * 2))
    durations = {
        "redis_stop_5s": 5.0,
        "redis_stop_30s": 30.0,
        "redis_stop_long": long_outage,
        "replica_stop": replica_outage,
        "primary_restart": 2.0,
    }
    chosen = [kind for kind in ROUND if kinds is None or kind in kinds]
    return [Fault(kind, durations.get(kind, 0.0)) for _ in range(rounds) for kind in chosen]


@dataclass
class FaultResult:
    kind: str
    seconds: float
    at: float  # seconds into the run
    recovery: float | None  # None: a canary did not get through within the timeout
    slowest: str = ""
    note: str = ""
    health: str = ""  # /health/queues once the paths worked again
    clock: str = ""  # wall-clock time it began (HH:MM:SS), to place log lines


@dataclass
class SoakReport:
    minutes: float
    settings: dict[str, str]
    faults: list[FaultResult] = field(default_factory=list)
    verdict: Verdict = field(default_factory=Verdict)
    accepted: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    uncertain: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    honcho: HonchoCheck | None = None
    process_states: dict[str, str] = field(default_factory=dict)
    exits: list[tuple[str, str, str]] = field(default_factory=list)  # (time, program, reason)
    kills: Counter[str] = field(default_factory=Counter)
    tracebacks: dict[str, int] = field(default_factory=dict)
    health_queues: str = ""
    drain_seconds: float = 0.0
    log_dir: str = ""
    errors: list[str] = field(default_factory=list)  # the soak could not do something it should

    @property
    def lost(self) -> int:
        return self.verdict.lost_total

    @property
    def duplicated(self) -> int:
        return self.verdict.duplicated_total

    @property
    def stuck(self) -> int:
        return self.verdict.stuck

    @property
    def manual_restarts(self) -> list[str]:
        """Programs supervisord no longer runs at the end: a human would have to start them."""
        return sorted(name for name, state in self.process_states.items() if state != "RUNNING")

    @property
    def unprovoked_exits(self) -> list[str]:
        """Exits the soak did not cause (it only SIGKILLs): under `make dev`'s honcho each would
        stop every process. With the fault that was under way."""
        found = []
        for when, name, reason in self.exits:
            if "SIGKILL" in reason:
                continue
            clock = when.split()[-1]
            during = [f for f in self.faults if f.clock <= clock]
            context = f", after {during[-1].kind} at {during[-1].clock}" if during else ""
            found.append(f"{name} ({reason}) at {clock}{context}")
        return found

    @property
    def ok(self) -> bool:
        return not self.failures()

    def failures(self) -> list[str]:
        found = []
        if self.lost:
            found.append(f"lost {self.lost}")
        if self.duplicated:
            found.append(f"duplicated {self.duplicated}")
        if self.stuck:
            found.append(f"stuck {self.stuck}")
        if self.verdict.failed_tasks:
            found.append(f"failed/dead tasks {self.verdict.failed_tasks}")
        if self.manual_restarts:
            found.append(f"not running at the end: {', '.join(self.manual_restarts)}")
        if self.unprovoked_exits:
            found.append(f"processes exited on their own: {'; '.join(self.unprovoked_exits)}")
        if self.server_errors:
            found.append(f"5xx answers {len(self.server_errors)}")
        if self.honcho is not None and not self.honcho.ok:
            found.append("honcho check failed")
        found.extend(self.errors)
        return found

    def table(self) -> str:
        lines = [f"Soak: {self.minutes:g} min, settings: " + ", ".join(f"{k}={v}" for k, v in self.settings.items())]
        lines.append("")
        lines.append(f"{'fault':<22}{'injected':>9}{'longest recovery':>18}  slowest path / notes")
        by_kind: dict[str, list[FaultResult]] = {}
        for result in self.faults:
            by_kind.setdefault(result.kind, []).append(result)
        for kind in dict.fromkeys(ROUND):
            results = by_kind.get(kind, [])
            if not results:
                lines.append(f"{kind:<22}{0:>9}{'-':>18}")
                continue
            failed = [r for r in results if r.recovery is None]
            worst = max(results, key=lambda r: float("inf") if r.recovery is None else r.recovery)
            shown = "NOT RECOVERED" if failed else f"{worst.recovery:.1f} s"
            notes = "; ".join(dict.fromkeys(r.note for r in results if r.note))
            label = f"{kind} ({results[0].seconds:g}s)" if results[0].seconds and "long" in kind else kind
            lines.append(f"{label:<22}{len(results):>9}{shown:>18}  {worst.slowest} {notes}".rstrip())
        v = self.verdict
        lines += [
            "",
            f"requests accepted   {sum(self.accepted.values())}  ("
            + ", ".join(f"{op} {n}" for op, n in sorted(self.accepted.items()))
            + ")",
            f"requests refused    {sum(self.refused.values())}  "
            + ", ".join(f"{op} {n}" for op, n in sorted(self.refused.items())),
            f"answer unknown      {sum(self.uncertain.values())}  "
            + ", ".join(f"{op} {n}" for op, n in sorted(self.uncertain.items())),
            f"4xx                 {sum(self.rejected.values())}  "
            + ", ".join(f"{op} {n}" for op, n in sorted(self.rejected.items())),
            f"5xx (failures)      {len(self.server_errors)}",
            f"tasks               {v.tasks}  ("
            + ", ".join(f"{s} {n}" for s, n in sorted(v.task_statuses.items()))
            + f"), outbox unpublished {v.outbox_unpublished}",
            "effects expected    " + ", ".join(f"{k} {n}" for k, n in sorted(v.expected.items())),
            f"LOST                {self.lost}  " + ", ".join(f"{k} {n}" for k, n in sorted(v.lost.items())),
            f"DUPLICATED          {self.duplicated}  "
            + ", ".join(f"{k} {n}" for k, n in sorted({**v.duplicated, **v.unexpected}.items())),
            f"STUCK               {self.stuck}",
            f"push replays        {v.push_replays}  (a delivered push's Idempotency-Key again: not delivered twice)",
            f"failed/dead tasks   {v.failed_tasks}",
            f"drain               {self.drain_seconds:.0f} s",
            "process exits       "
            + ", ".join(
                f"{name} {n} (SIGKILLed by the soak {self.kills.get(name, 0)})"
                for name, n in sorted(Counter(name for _, name, _ in self.exits).items())
            ),
            "exited on their own " + ("; ".join(self.unprovoked_exits) or "none"),
            "not running at end  " + (", ".join(self.manual_restarts) or "none"),
            "tracebacks in logs  " + (", ".join(f"{k} {n}" for k, n in sorted(self.tracebacks.items()) if n) or "none"),
        ]
        if self.honcho is not None:
            lines.append(f"honcho Ctrl-C check {'ok' if self.honcho.ok else 'FAILED'}: {self.honcho.describe()}")
        if self.health_queues:
            lines.append(f"/health/queues      {self.health_queues}")
        if self.failures():
            lines.append("RESULT: FAILED: " + "; ".join(self.failures()))
        else:
            lines.append("RESULT: ok")
        if self.log_dir:
            lines.append(f"logs: {self.log_dir}")
        return "\n".join(lines)

    def details(self) -> str:
        lines = []
        if self.verdict.problems:
            lines.append("Problems found:")
            lines += [f"  {p}" for p in self.verdict.problems[:100]]
        if self.server_errors:
            lines.append("5xx answers:")
            lines += [f"  {e}" for e in self.server_errors[:30]]
        if self.faults:
            lines.append("Faults:")
            for r in self.faults:
                recovery = "not recovered" if r.recovery is None else f"{r.recovery:.1f}s"
                lines.append(f"  +{r.at:6.0f}s {r.clock} {r.kind:<20} {recovery:>14} {r.slowest} {r.note}".rstrip())
                lines.append(f"{'':>10}/health/queues then: {r.health}")
        return "\n".join(lines)


class Soak:
    def __init__(
        self,
        minutes: float,
        *,
        clients: int,
        pause: float,
        recovery_timeout: float,
        kinds: list[str] | None,
        environ: dict[str, str],
    ) -> None:
        self.minutes = minutes
        self.environ = environ
        self.kinds = kinds
        self.clients = clients
        self.pause = pause
        self.recovery_timeout = recovery_timeout
        self.root = Path(tempfile.mkdtemp(prefix="jobplatform-soak-"))
        self.root.chmod(0o711)  # PostgreSQL runs as an unprivileged account when we are root
        self.started = time.monotonic()
        self.kills: Counter[str] = Counter()
        self.stranded: set[str] = set()  # tasks a fault left unfinished past its recovery timeout
        self.replica_turn = 0

    # -- set-up -------------------------------------------------------------------------------

    def environment(self) -> tuple[dict[str, str], dict[str, str]]:
        from devtools.devstack import free_port

        settings = {key: self.environ.get(key, value) for key, value in SOAK_DEFAULTS.items()}
        self.api_port = free_port()
        env = {
            **self.environ,
            **settings,
            **self.stack.environment(),
            "MEDIA_ROOT": str(self.root / "media"),
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.inbox.port),
            "SMTP_USE_TLS": "false",
            "PUSH_PROVIDER": "webhook",
            "PUSH_WEBHOOK_URL": self.pushes.url,
            "API_PORT": str(self.api_port),
            "FLOWER_PORT": str(free_port()),
            "BASE_URL": f"http://127.0.0.1:{self.api_port}",
            # The load is hundreds of users on one address: exactly what the per-address
            # limits stop. The soak is about faults, so the limits are off here.
            "RATE_LIMITS_ENABLED": "false",
            "PROBE_TOKEN": SOAK_PROBE_TOKEN,
        }
        return process_environment(env), settings

    def psql(self, sql: str) -> str:
        assert self.stack.primary is not None
        return self.stack.primary.psql(sql)

    async def confirm_address(self, user_id: int) -> bool:
        """Bench shortcut: mark a soak account's email address confirmed on the primary, as
        following the emailed link would (the soak is about faults, not sign-up), retrying
        through a primary restart; then give the replicas a moment to have it (the API reads
        the signed-in account from one). False if the primary stayed unreachable."""
        from devtools.devstack.common import StackError

        deadline = time.monotonic() + 60
        while True:
            try:
                await asyncio.to_thread(self.psql, f"UPDATE users SET email_verified_at = now() WHERE id = {user_id:d}")
                break
            except StackError:
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(1)
        with contextlib.suppress(StackError):  # a replica stopped by a fault: its lag is the API's business
            await asyncio.to_thread(self.stack.wait_for_replicas, 5)
        return True

    def redis(self) -> Any:  # a redis.Redis client
        from redis import Redis

        return Redis.from_url(self.env["REDIS_URL"], socket_timeout=5, socket_connect_timeout=2)

    def all_started(self) -> bool:
        """The API answers, every RQ worker registered itself, the Celery worker is ready."""
        rq_workers = int(self.env.get("RQ_WORKERS", "2")) + 1
        with contextlib.suppress(Exception):
            api = httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200
            registered = len(self.redis().smembers("rq:workers"))
            celery_ready = "ready." in self.supervisor.log_of("celery").read_text(errors="replace")
            return api and registered >= rq_workers and celery_ready
        return False

    async def wait_for_workers(self, seconds: float = 90) -> None:
        deadline = time.monotonic() + seconds
        while not await asyncio.to_thread(self.all_started):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Procfile's processes did not all start within {seconds:.0f}s; see {self.root}/logs"
                )
            await asyncio.sleep(0.5)

    # -- canaries: how long until a path works again ----------------------------------------------

    async def _until(self, condition: Callable[[], Awaitable[bool]], deadline: float) -> bool:
        while time.monotonic() < deadline:
            if await condition():
                return True
            await asyncio.sleep(0.25)
        return False

    def unfinished_tasks(self, queues: tuple[str, ...] | None) -> set[str]:
        where = "status IN ('pending', 'queued', 'started', 'retrying')"
        if queues:
            where += " AND queue IN (" + ", ".join(f"'{q}'" for q in queues) + ")"
        return set(filter(None, self.psql(f"SELECT id FROM task_records WHERE {where}").splitlines()))

    async def canary(self, path: str, deadline: float, inflight: set[str] | None = None) -> bool:
        load = self.load
        if path == "inflight":
            waiting = set(inflight or ())

            async def finished() -> bool:
                if not waiting:
                    return True
                ids = ", ".join(f"'{task_id}'" for task_id in waiting)
                sql = f"SELECT id FROM task_records WHERE id IN ({ids}) AND status <> 'succeeded'"
                still = set(filter(None, (await asyncio.to_thread(self.psql, sql)).splitlines()))
                waiting.intersection_update(still)
                return not waiting

            ok = await self._until(finished, deadline)
            if not ok:
                self.unrecovered_tasks = sorted(waiting)
                self.stranded.update(waiting)
            return ok
        first = True
        while time.monotonic() < deadline:
            if not first:
                await asyncio.sleep(0.5)  # the last attempt was refused or rejected
            first = False
            if path == "email":
                user = await load.register("job_seeker", canary=True)
                if user is None:
                    continue

                async def arrived(user_id: int = user.id) -> bool:
                    return self.inbox.has_message_id(f"welcome-email-{user_id}")

                return await self._until(arrived, deadline)
            if path == "push":
                pair = await load.follow()
                if pair is None:
                    await load.register("job_seeker")
                    continue
                follower, followed = pair

                async def pushed(token: str = followed.device, follower_id: int = follower.id) -> bool:
                    return self.pushes.has_push(token, {"follower_id": follower_id})

                return await self._until(pushed, deadline)
            if path == "analytics":
                markers = await load.analytics(1)
                if not markers:
                    continue

                async def stored(marker: str = markers[0]) -> bool:
                    sql = f"SELECT count(*) FROM analytics_events WHERE data->>'soak' = '{marker}'"
                    return await asyncio.to_thread(self.psql, sql) != "0"

                return await self._until(stored, deadline)
            if path == "video":
                video_id = await load.upload_video()
                if video_id is None:
                    continue

                async def ready(video_id: int = video_id) -> bool:
                    sql = f"SELECT status FROM videos WHERE id = {video_id}"
                    return await asyncio.to_thread(self.psql, sql) == "ready"

                return await self._until(ready, deadline)
            if path == "api":
                if await load.follow() is not None:
                    return True
                continue
            if path == "beat":
                return await self._until(self._beat_running, deadline)
        return False

    async def _beat_running(self) -> bool:
        return await asyncio.to_thread(lambda: self.supervisor.states().get("beat") == "RUNNING")

    async def recovery(self, kind: str, fault_end: float) -> tuple[float | None, str]:
        deadline = fault_end + self.recovery_timeout
        paths = CANARIES[kind]
        # Tasks an earlier fault already left unfinished are that fault's, not this one's.
        inflight = await asyncio.to_thread(self.unfinished_tasks, FAULT_QUEUES.get(kind)) - self.stranded
        self.unrecovered_tasks: list[str] = []

        async def timed(path: str) -> tuple[str, float | None]:
            try:
                ok = await self.canary(path, deadline, inflight)
            except Exception as error:  # the canary itself broke: say so rather than hang the soak
                self.report.errors.append(f"canary {path} after {kind}: {type(error).__name__}: {error}")
                ok = False
            return path, (time.monotonic() - fault_end) if ok else None

        results = await asyncio.gather(*(timed(path) for path in paths))
        if any(seconds is None for _, seconds in results):
            failed = ",".join(path for path, seconds in results if seconds is None)
            tasks = f" (unfinished: {', '.join(self.unrecovered_tasks[:5])})" if self.unrecovered_tasks else ""
            return None, f"{failed} did not recover{tasks}"
        path, seconds = max(results, key=lambda item: item[1] or 0.0)
        return seconds, f"({path})"

    # -- faults ---------------------------------------------------------------------------------

    def _pid(self, name: str) -> int:
        return self.supervisor.pid(name)

    async def inject(self, fault: Fault) -> str:
        kind = fault.kind
        stack = self.stack
        assert stack.redis is not None
        assert stack.primary is not None
        if kind.startswith("redis_"):
            client = self.redis()
            with contextlib.suppress(Exception):
                client.set("soak:data-marker", "1")
            # Accepted events sit in Redis until a flush writes them: the crash comes right after.
            await self.load.analytics(5)
            await asyncio.to_thread(stack.redis.stop)
            await asyncio.sleep(fault.seconds)
            await asyncio.to_thread(stack.redis.start)
            try:
                gone = client.get("soak:data-marker") is None
            except Exception as error:
                return f"could not read Redis after the restart: {error}"
            return "" if gone else "Redis kept its data (not a crash without persistence)"
        if kind == "replica_stop":
            replica = stack.replicas[self.replica_turn % len(stack.replicas)]
            self.replica_turn += 1
            await asyncio.to_thread(replica.stop, "immediate")
            await asyncio.sleep(fault.seconds)
            await asyncio.to_thread(replica.start)
            return f"{replica.name}"
        if kind == "primary_restart":
            await asyncio.to_thread(stack.primary.stop, "fast")
            await asyncio.sleep(fault.seconds)
            await asyncio.to_thread(stack.primary.start)
            return ""
        self.kill_note = ""
        program, targets = await self._kill_targets(kind)
        pool_children = children_of(targets[0]) if kind == "kill_celery_parent" and targets else []
        if not targets:
            return f"nothing killed: no {program} process (or work horse) found"
        sigkill(targets)
        if kind in ("kill_celery_child", "kill_rq_horse"):
            return self.kill_note
        self.kills[program] += 1
        new_pid = await asyncio.to_thread(self.supervisor.wait_running, program, not_pid=targets[0], timeout=60)
        note = "" if new_pid else f"{program} not restarted within 60 s"
        if kind == "kill_celery_parent":
            # Under compose the parent is the container's first process: its children die with
            # it. supervisord leaves them; say so, then end them as the container would.
            orphans = [pid for pid in pool_children if alive(pid)]
            if orphans:
                note += f" {len(orphans)} pool child(ren) outlived the parent; killed"
                sigkill(orphans)
        return note.strip()

    async def _kill_targets(self, kind: str) -> tuple[str, list[int]]:
        if kind == "kill_relay":
            return "relay", [self._pid("relay")]
        if kind == "kill_beat":
            return "beat", [self._pid("beat")]
        if kind == "kill_api":
            return "web", [self._pid("web")]
        if kind == "kill_celery_parent":
            parent = self._pid("celery")
            return "celery", [parent] if parent else []
        if kind == "kill_celery_child":
            # The child that is handing an email to the SMTP server (slowed down meanwhile),
            # the moment a crash is hardest to recover from; else the youngest child.
            parent = self._pid("celery")
            self.inbox.data_delay = 3.0
            try:
                for _ in range(3):
                    await self.load.password_reset()
                deadline = time.monotonic() + 20
                while parent and time.monotonic() < deadline:
                    sending = connected_to(children_of(parent), self.inbox.port)
                    if sending and self.inbox.taking:
                        self.kill_note = "while it handed an email to the SMTP server"
                        return "celery", sending[:1]
                    await asyncio.sleep(0.02)
            finally:
                self.inbox.data_delay = 0.0
            children = children_of(parent) if parent else []
            self.kill_note = "the youngest child (none was handing over an email)"
            return "celery", children[-1:]
        if kind == "kill_rq_pool":
            parent = self._pid("rq")
            return "rq", [parent, *descendants_of(parent)] if parent else []
        if kind == "kill_rq_video":
            parent = self._pid("rq-video")
            return "rq-video", [parent, *descendants_of(parent)] if parent else []
        if kind == "kill_rq_horse":
            parent = self._pid("rq-video")
            if not parent:
                return "rq-video", []
            # Its other children (RQ's scheduler) were there before the upload; the horse is new.
            # Killed once its video is being transcoded: mid-job, not at the fork.
            before = set(children_of(parent))
            video_id = await self.load.upload_video(long=True)
            deadline = time.monotonic() + 30
            while video_id is not None and time.monotonic() < deadline:
                horses = [pid for pid in children_of(parent) if pid not in before and alive(pid)]
                sql = f"SELECT status FROM videos WHERE id = {video_id}"
                if horses and await asyncio.to_thread(self.psql, sql) == "processing":
                    return "rq-video", horses[:1]
                await asyncio.sleep(0.02)
            return "rq-video", []
        raise ValueError(kind)

    async def run_faults(self, faults: list[Fault], end_target: float) -> None:
        for index, fault in enumerate(faults):
            remaining = faults[index:]
            budget = end_target - time.monotonic() - sum(f.seconds for f in remaining) - 10 * len(remaining)
            await asyncio.sleep(min(30.0, max(2.0, budget / len(remaining))))
            at = time.monotonic() - self.started
            clock = time.strftime("%H:%M:%S")
            print(f"[soak +{at:5.0f}s {clock}] fault {fault.kind} {fault.seconds:g}s", flush=True)
            try:
                note = await self.inject(fault)
            except Exception as error:
                note = f"injection failed: {type(error).__name__}: {error}"
                self.report.errors.append(f"{fault.kind}: {note}")
            fault_end = time.monotonic()
            recovered, slowest = await self.recovery(fault.kind, fault_end)
            health = await self.health_after(fault.kind, fault_end)
            result = FaultResult(fault.kind, fault.seconds, at, recovered, slowest, note, health, clock)
            self.report.faults.append(result)
            shown = "NOT RECOVERED" if recovered is None else f"{recovered:.1f}s"
            print(f"[soak +{time.monotonic() - self.started:5.0f}s]   recovered {shown} {slowest} {note}", flush=True)

    async def queue_health(self) -> tuple[str, bool]:
        """What /health/queues says (status and problems), and whether it calls Redis reachable."""
        assert self.load.http is not None
        try:
            response = await self.load.http.get("/health/queues", timeout=60, headers=PROBE_HEADERS)
            body = response.json()
        except (httpx.HTTPError, ValueError) as error:
            return f"/health/queues failed: {type(error).__name__}", False
        problems = "; ".join(body.get("problems") or [])
        redis = body.get("redis") or {}
        if not redis.get("reachable", True):
            problems += f" (redis error: {redis.get('error')})"
        shown = f"{response.status_code} {body.get('status')}" + (f": {problems}" if problems else "")
        return shown, bool(redis.get("reachable", False))

    async def health_after(self, kind: str, fault_end: float) -> str:
        """/health/queues once the paths work again; after a Redis fault, also how long after
        Redis came back it still called Redis unreachable."""
        shown, reachable = await self.queue_health()
        if not kind.startswith("redis_") or reachable:
            return shown
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            await asyncio.sleep(1)
            _, reachable = await self.queue_health()
            if reachable:
                lag = time.monotonic() - fault_end
                return f"{shown}; called Redis unreachable until {lag:.0f} s after it was back"
        return f"{shown}; still calls Redis unreachable {time.monotonic() - fault_end:.0f} s after it was back"

    # -- the run --------------------------------------------------------------------------------

    async def drain(self, seconds: float) -> Verdict:
        """Check until everything expected arrived, or nothing can change any more (no task
        unfinished, the outbox empty, the same shortfall for three checks), or time is up."""
        started = time.monotonic()
        quiet_checks = 0
        last_missing = -1
        while True:
            verdict = await asyncio.to_thread(check, self.psql, self.load.ledger, self.inbox, self.pushes)
            self.report.drain_seconds = time.monotonic() - started
            if verdict.settled or time.monotonic() - started > seconds:
                return verdict
            idle = verdict.stuck == 0 and verdict.outbox_unpublished == 0 and verdict.lost_total == last_missing
            quiet_checks = quiet_checks + 1 if idle else 0
            last_missing = verdict.lost_total
            if quiet_checks >= 3:
                return verdict
            print(
                f"[soak drain {self.report.drain_seconds:4.0f}s] missing {verdict.lost_total},"
                f" unfinished tasks {verdict.stuck}, outbox unpublished {verdict.outbox_unpublished}",
                flush=True,
            )
            await asyncio.sleep(5)

    def collect_process_facts(self) -> None:
        report = self.report
        with contextlib.suppress(Exception):
            report.process_states = self.supervisor.states()
        report.exits = self.supervisor.exits()
        report.kills = self.kills
        for name in self.supervisor.commands:
            log = self.supervisor.log_of(name)
            text = log.read_text(errors="replace") if log.exists() else ""
            report.tracebacks[name] = len(re.findall(r"Traceback \(most recent call last\)", text))
        with contextlib.suppress(Exception):
            response = httpx.get(f"{self.base_url}/health/queues", timeout=60, headers=PROBE_HEADERS)
            body = response.json()
            report.health_queues = f"HTTP {response.status_code} {body.get('status')} problems={body.get('problems')}"

    async def run(self, *, drain_seconds: float, honcho: bool) -> SoakReport:
        from devtools.devstack import LocalStack, free_port, run_migrations

        self.stack = LocalStack(self.root, replicas=2, durable=False)
        # Their ports are chosen once the stack's servers listen, and each sink listens at once:
        # the stack chose its ports when it was made, so a port chosen before it started could
        # be one of them (CI saw the SMTP sink's port taken by then).
        self.inbox = SmtpInbox(port=0)
        self.pushes = PushEndpoint(port=0)
        self.supervisor: Supervisor | None = None
        try:
            print(f"[soak] starting PostgreSQL (primary + 2 replicas) and Redis under {self.root}", flush=True)
            await asyncio.to_thread(self.stack.start)
            self.inbox.port = free_port()
            self.inbox.start()
            self.pushes.port = free_port()
            self.pushes.start()
            self.env, settings = self.environment()
            self.report = SoakReport(minutes=self.minutes, settings=settings, log_dir=str(self.root / "logs"))
            await asyncio.to_thread(run_migrations, self.env)
            self.base_url = f"http://127.0.0.1:{self.api_port}"
            (self.root / "logs").mkdir(exist_ok=True)
            if honcho:
                print("[soak] honcho -f Procfile start, then Ctrl-C", flush=True)
                self.report.honcho = await asyncio.to_thread(
                    honcho_check, self.env, self.api_port, self.env["REDIS_URL"], self.root / "logs" / "honcho.log"
                )
                print(f"[soak] honcho: {self.report.honcho.describe()}", flush=True)
                # Start the soak proper from an empty Redis (ghost registrations are reported above).
                self.redis().flushall()
            self.supervisor = Supervisor(self.root, self.env)
            print(f"[soak] supervisord running the Procfile: {', '.join(self.supervisor.commands)}", flush=True)
            await asyncio.to_thread(self.supervisor.start)
            await self.wait_for_workers()
            self.started = time.monotonic()
            end_target = self.started + self.minutes * 60
            async with Load(
                self.base_url, clients=self.clients, pause=self.pause, confirm_address=self.confirm_address
            ) as self.load:
                await self.load.populate(employers=4, seekers=8)
                load_task = asyncio.create_task(self.load.run())
                faults = asyncio.create_task(self.run_faults(plan(self.minutes, self.kinds), end_target - 15))
                try:
                    await faults
                    await asyncio.sleep(max(0.0, end_target - time.monotonic()))
                finally:
                    self.load.stopping.set()
                    await load_task
                print(f"[soak +{time.monotonic() - self.started:5.0f}s] load stopped; draining", flush=True)
                self.report.verdict = await self.drain(drain_seconds)
                ledger = self.load.ledger
                self.report.accepted = ledger.accepted
                self.report.refused = ledger.refused
                self.report.uncertain = ledger.uncertain
                self.report.rejected = ledger.rejected
                self.report.server_errors = ledger.failures
            self.collect_process_facts()
            return self.report
        finally:
            if self.supervisor is not None:
                await asyncio.to_thread(self.supervisor.stop)
            self.pushes.stop()
            self.inbox.stop()
            with contextlib.suppress(Exception):
                self.stack.stop()
            self.tidy()

    def tidy(self) -> None:
        """Remove the servers' data; keep the logs when the soak failed or a log has a traceback."""
        report = getattr(self, "report", None)
        if report is not None and report.ok and not any(report.tracebacks.values()):
            shutil.rmtree(self.root, ignore_errors=True)
            report.log_dir = ""
            return
        for data in ("postgres/primary", "postgres/replica1", "postgres/replica2", "redis", "media"):
            shutil.rmtree(self.root / data, ignore_errors=True)


def run_soak(
    minutes: float = 10,
    *,
    clients: int = 4,
    pause: float = 1.0,
    drain_minutes: float | None = None,
    recovery_timeout: float | None = None,
    honcho: bool = True,
    kinds: list[str] | None = None,
    environ: dict[str, str] | None = None,
) -> SoakReport:
    """Run the whole soak; returns the report (its `table()` and `details()` say the rest).

    `environ` is what the processes inherit (default: this process's environment); setting
    overrides go there."""
    # One log line per request or SMTP command would bury the report.
    for noisy in ("httpx", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    drain = 60 * (drain_minutes if drain_minutes is not None else min(8.0, max(3.0, minutes * 0.8)))
    # Long enough for a killed video job's retry (RQ waits 60 s before the first).
    timeout = recovery_timeout if recovery_timeout is not None else 120.0
    soak = Soak(
        minutes,
        clients=clients,
        pause=pause,
        recovery_timeout=timeout,
        kinds=kinds,
        environ=dict(os.environ if environ is None else environ),
    )
    return asyncio.run(soak.run(drain_seconds=drain, honcho=honcho))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="length of the load and fault schedule")
    parser.add_argument("--clients", type=int, default=4, help="concurrent API clients")
    parser.add_argument("--pause", type=float, default=1.0, help="mean seconds between one client's requests")
    parser.add_argument("--drain-minutes", type=float, default=None, help="longest wait for the backlog (8)")
    parser.add_argument("--no-honcho-check", action="store_true", help="skip the honcho Ctrl-C check")
    parser.add_argument("--faults", default="", help=f"only these kinds, comma-separated: {', '.join(ROUND)}")
    args = parser.parse_args(argv)
    kinds = [kind.strip() for kind in args.faults.split(",") if kind.strip()] or None
    if kinds and set(kinds) - set(ROUND):
        parser.error(f"unknown fault kinds: {', '.join(sorted(set(kinds) - set(ROUND)))}")
    report = run_soak(
        args.minutes,
        clients=args.clients,
        pause=args.pause,
        drain_minutes=args.drain_minutes,
        honcho=not args.no_honcho_check,
        kinds=kinds,
    )
    print(report.details())
    print()
    print(report.table())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
