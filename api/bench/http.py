"""Benchmark: the project's request paths over HTTP against two baselines (issue 15).

    cd api && ../.venv/bin/python -m bench.http [--seconds 8] [--connections 32] [--routes feed,login]
    cd api && ../.venv/bin/python -m bench.http --quick      # 2 s per side: a smoke test
    cd api && ../.venv/bin/python -m bench.http --observability   # metrics + JSON logs on vs off
    cd api && ../.venv/bin/python -m bench.http --processes       # WEB_CONCURRENCY=2 vs 1

Starts its own PostgreSQL primary with two streaming replicas and Redis (devtools.devstack)
in a temporary folder, seeds them through SQL on the primary (3,000 searchable jobs, 2,000
verified job seekers each with an open sign-in session, authors, follows, posts, likes and
comments), waits for the replicas, then starts three servers, one uvicorn process each:

- project: the Procfile's own `web` line (tests.processes.web_server), RATE_LIMITS_ENABLED=false
  so the login throttles do not refuse the load, and otherwise as deployed: that line keeps
  uvicorn's access log on (one line per request, here into a file), the baselines do not;
- bare: FastAPI + an asyncpg pool, the same SQL, no auth, no ORM, no outbox: the ceiling;
- orm: FastAPI + SQLAlchemy 2 async sessions (pool_pre_ping), mapped classes, pydantic
  response models, no auth, no outbox: what most FastAPI services look like
  (both in bench/http_baselines.py, started with `uvicorn ... --no-access-log`).

Each route is measured with wrk (`--threads` threads, `--connections` connections,
`--seconds` per run), after a short warm-up of each side, in `--rounds` rounds of the three
sides in turn, each round starting with the next side (project, bare, orm, then bare, orm,
project, ...); the best run of each side is kept.
Prints, per route, req/s of each side, the project's ratio to each baseline, p50/p99 latency,
and every answer that was not a 2xx (or socket error) per side: a side with errors is marked,
its req/s is not a throughput of the route. The machine is shared and noisy: read the
ratios, which come from runs minutes apart, rather than the absolute figures.

`--observability` measures instead what the operators' view costs: the project as deployed
with metrics and JSON logs (METRICS_ENABLED=true, LOG_FORMAT=json) against the same project
without either (METRICS_ENABLED=false, LOG_FORMAT=text), two Procfile web servers side by
side, printing observed req/s / quiet req/s per route.

`--processes` measures what a second API process buys: the Procfile's web line with
WEB_CONCURRENCY=2 against the same line with 1, printing two/one req/s per route. On a
machine with as few cores as this one (2, shared with wrk and PostgreSQL), expect little.

wrk is the Debian package `wrk` (`sudo apt-get install wrk`); the Lua scripts are in bench/wrk/.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from bench.stack import bench_stack

if TYPE_CHECKING:
    from devtools.devstack import LocalStack
    from tests.processes import Worker

WRK_DIR = Path(__file__).resolve().parent / "wrk"
SIDES = ("project", "bare", "orm")
OBSERVABILITY_SIDES = ("observed", "quiet")
PROCESSES_SIDES = ("two", "one")
# The project's environment on each side; the baselines take none.
SIDE_ENVIRONMENT = {
    "project": {"RATE_LIMITS_ENABLED": "false"},
    "observed": {"RATE_LIMITS_ENABLED": "false", "METRICS_ENABLED": "true", "LOG_FORMAT": "json"},
    "quiet": {"RATE_LIMITS_ENABLED": "false", "METRICS_ENABLED": "false", "LOG_FORMAT": "text"},
    "two": {"RATE_LIMITS_ENABLED": "false", "WEB_CONCURRENCY": "2"},
    "one": {"RATE_LIMITS_ENABLED": "false", "WEB_CONCURRENCY": "1"},
}

EMPLOYERS = 20
JOBS = 3000
SEEKERS = 2000
AUTHORS = 200
POSTS_PER_AUTHOR = 25
FOLLOWED_AUTHORS = 50
PASSWORD = "correct-horse-42"  # noqa: S105 - the seeded accounts' password
SEARCH = "python"  # in one title in eight
# The most requests one wrk run could send to POST /api/jobs/{id}/apply (req/s x seconds).
APPLY_CEILING_PER_SECOND = 6000


@dataclass
class Fixture:
    """What the routes need from the seeded data."""

    job_id: int
    reader_id: int  # follows FOLLOWED_AUTHORS authors: the feed
    reader_token: str
    sender_id: int  # sends the messages, to `recipient_id`
    sender_token: str
    recipient_id: int
    login_email: str
    tokens_file: Path  # "user_id token" per job seeker: the applicants
    apply_first_job: int
    apply_jobs: int  # how many jobs, from apply_first_job, each wrk run applies to
    apply_runs: int  # how many runs the seeded apply jobs last
    apply_runs_used: int = 0

    def next_apply_range(self) -> int:
        if self.apply_runs_used >= self.apply_runs:
            raise RuntimeError("no fresh jobs left to apply to: seed more (apply_runs)")
        first = self.apply_first_job + self.apply_runs_used * self.apply_jobs
        self.apply_runs_used += 1
        return first


@dataclass(frozen=True)
class Route:
    name: str
    label: str
    script: str  # in bench/wrk/


ROUTES = (
    Route("health", "GET /health", "get.lua"),
    Route("job", "GET /api/jobs/{id} (anonymous, replica)", "get.lua"),
    Route("jobs", "GET /api/jobs (count + page of 20)", "get.lua"),
    Route("search", f"GET /api/jobs?q={SEARCH}", "get.lua"),
    Route("feed", "GET /api/posts (signed in)", "get.lua"),
    Route("message", "POST /api/messages (signed in)", "post.lua"),
    Route("apply", "POST /api/jobs/{id}/apply (fresh applicant)", "apply.lua"),
    Route("login", "POST /api/auth/login", "post.lua"),
)


def wrk_arguments(route: Route, fixture: Fixture, base_url: str, threads: int) -> tuple[list[str], list[str]]:
    """(wrk options before the URL, the URL and the script's arguments)."""
    reader = ["-H", f"Authorization: Bearer {fixture.reader_token}", "-H", f"X-User-Id: {fixture.reader_id}"]
    sender = ["-H", f"Authorization: Bearer {fixture.sender_token}", "-H", f"X-User-Id: {fixture.sender_id}"]
    match route.name:
        case "health":
            return [], [f"{base_url}/health"]
        case "job":
            return [], [f"{base_url}/api/jobs/{fixture.job_id}"]
        case "jobs":
            return [], [f"{base_url}/api/jobs?limit=20"]
        case "search":
            return [], [f"{base_url}/api/jobs?q={SEARCH}&limit=20"]
        case "feed":
            return reader, [f"{base_url}/api/posts?limit=20"]
        case "message":
            body = json.dumps({"recipient_id": fixture.recipient_id, "body": "Are you free for a call on Thursday?"})
            return sender, [f"{base_url}/api/messages", body]
        case "apply":
            first = fixture.next_apply_range()
            return [], [f"{base_url}/", str(fixture.tokens_file), str(first), str(fixture.apply_jobs), str(threads)]
        case "login":
            return [], [f"{base_url}/api/auth/login", json.dumps({"email": fixture.login_email, "password": PASSWORD})]
    raise ValueError(route.name)


@dataclass
class Run:
    requests: int
    seconds: float
    statuses: dict[str, int]
    socket_errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> int:
        return self.socket_errors + sum(n for status, n in self.statuses.items() if not status.startswith("2"))


def run_wrk(route: Route, fixture: Fixture, base_url: str, *, seconds: float, connections: int, threads: int) -> Run:
    options, target = wrk_arguments(route, fixture, base_url, threads)
    command = [
        "wrk",
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={max(1, round(seconds))}s",
        "--timeout=10s",
        f"--script={WRK_DIR / route.script}",
        *options,
        *target,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=seconds + 60)
    drain(result.stdout)
    line = next((x for x in result.stdout.splitlines() if x.startswith("BENCH ")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    report = json.loads(line.removeprefix("BENCH "))
    return Run(
        requests=report["requests"],
        seconds=report["duration_us"] / 1e6,
        statuses=report["statuses"],
        socket_errors=report["connect"] + report["read"] + report["write"] + report["timeout"],
        p50_ms=report["p50_us"] / 1000,
        p99_ms=report["p99_us"] / 1000,
        max_ms=report["max_us"] / 1000,
    )


def drain(wrk_output: str) -> None:
    """Wait for the requests wrk left in flight when it stopped (up to `--connections` of them,
    each done within about the slowest latency seen), so that they do not take the CPU from
    the next side's run."""
    line = next((x for x in wrk_output.splitlines() if x.startswith("BENCH ")), None)
    slowest = json.loads(line.removeprefix("BENCH "))["max_us"] / 1e6 if line else 10.0
    time.sleep(min(10.0, slowest + 0.5))


# --- seed -----------------------------------------------------------------------------------


def seed(stack: LocalStack, *, apply_runs: int, seconds: float, root: Path) -> Fixture:
    from backend_app.core.security import create_access_token, hash_password

    assert stack.primary is not None
    sql = stack.primary.psql
    password_hash = hash_password(PASSWORD)

    def users(prefix: str, role: str, count: int) -> None:
        sql(
            "INSERT INTO users (email, username, first_name, last_name, password_hash, role, email_verified_at)"
            f" SELECT '{prefix}' || n || '@example.com', '{prefix}' || n, 'Bench', '{prefix.title()} ' || n,"
            f" '{password_hash}', '{role}', now() FROM generate_series(1, {count}) n"
        )

    users("employer", "employer", EMPLOYERS)
    users("seeker", "job_seeker", SEEKERS)
    users("author", "job_seeker", AUTHORS)
    employer = int(sql("SELECT min(id) FROM users WHERE role = 'employer'"))
    # Titles and descriptions from word lists, so that full-text search has something to rank.
    sql(
        "INSERT INTO jobs (employer_id, title, description, location, salary_min, salary_max, created_at)"
        f" SELECT {employer} + n % {EMPLOYERS},"
        " (ARRAY['Senior','Junior','Staff','Lead'])[1 + n % 4] || ' '"
        " || (ARRAY['Python','Go','Java','Rust','TypeScript','Ruby','Kotlin','Elixir'])[1 + n % 8] || ' '"
        " || (ARRAY['Engineer','Developer','Architect','Analyst','Consultant'])[1 + n % 5],"
        " 'Join our team to build ' || (ARRAY['payments','search','logistics','analytics','messaging',"
        "'billing'])[1 + n % 6] || ' systems with PostgreSQL and ' || (ARRAY['Kubernetes','AWS','Kafka',"
        "'Redis','Celery'])[1 + n % 5] || '. You will own services end to end, review code, mentor'"
        " || ' colleagues and talk to customers. Posting number ' || n || '.',"
        " (ARRAY['Berlin','Remote','London','Paris','Lisbon','Warsaw'])[1 + n % 6],"
        " 40000 + n % 50 * 1000, 60000 + n % 50 * 1000, now() - n * interval '1 minute'"
        f" FROM generate_series(1, {JOBS}) n"
    )
    job_id = int(sql(f"SELECT id FROM jobs ORDER BY id OFFSET {JOBS // 2} LIMIT 1"))
    # Jobs only applied to, older than the rest: each wrk run of `apply` gets `apply_jobs` of its own.
    seekers = [int(x) for x in sql("SELECT id FROM users WHERE email LIKE 'seeker%' ORDER BY id").split()]
    apply_jobs = math.ceil(APPLY_CEILING_PER_SECOND * seconds / len(seekers)) + 1
    apply_first_job = int(sql("SELECT max(id) FROM jobs")) + 1
    sql(
        "INSERT INTO jobs (employer_id, title, description, location, created_at)"
        f" SELECT {employer}, 'Bench Applications ' || n, 'A job that the benchmark applies to.', 'Remote',"
        f" now() - interval '30 days' FROM generate_series(1, {apply_runs * apply_jobs}) n"
    )
    assert int(sql("SELECT min(id) FROM jobs WHERE title LIKE 'Bench Applications%'")) == apply_first_job
    # Posts, likes, comments, and one reader who follows FOLLOWED_AUTHORS authors.
    sql(
        "INSERT INTO posts (author_id, body, created_at)"
        " SELECT u.id, 'Shipped a new release of our ' || u.id || ' service today, post ' || n,"
        " now() - (n * 97 + u.id) * interval '1 second'"
        f" FROM users u, generate_series(1, {POSTS_PER_AUTHOR}) n WHERE u.email LIKE 'author%'"
    )
    sql(
        "INSERT INTO post_likes (post_id, user_id) SELECT p.id, s.id FROM posts p"
        " JOIN users s ON s.email LIKE 'seeker%' AND (s.id + p.id) % 500 < 3"
    )
    sql(
        "INSERT INTO comments (post_id, author_id, body) SELECT p.id, p.author_id, 'Congratulations!'"
        " FROM posts p WHERE p.id % 2 = 0"
    )
    reader, sender = seekers[0], seekers[1]
    sql(
        f"INSERT INTO follows (follower_id, followed_id) SELECT {reader}, id FROM users"
        f" WHERE email LIKE 'author%' ORDER BY id LIMIT {FOLLOWED_AUTHORS}"
    )
    # One open sign-in session per job seeker, and an access token for it.
    sql(
        "INSERT INTO auth_sessions (user_id, user_agent, expires_at)"
        " SELECT id, 'bench.http', now() + interval '1 day' FROM users WHERE email LIKE 'seeker%'"
    )
    sessions = dict(
        (int(user), int(session))
        for user, session in (row.split("|") for row in sql("SELECT user_id, id FROM auth_sessions").split())
    )
    sql("ANALYZE")
    lifetime = timedelta(hours=6)
    tokens = {user: create_access_token(user, session_id=sessions[user], expires_in=lifetime) for user in seekers}
    tokens_file = root / "applicants.txt"
    tokens_file.write_text("".join(f"{user} {tokens[user]}\n" for user in seekers))
    stack.wait_for_replicas()
    return Fixture(
        job_id=job_id,
        reader_id=reader,
        reader_token=tokens[reader],
        sender_id=sender,
        sender_token=tokens[sender],
        recipient_id=employer,
        login_email=f"seeker{SEEKERS}@example.com",
        tokens_file=tokens_file,
        apply_first_job=apply_first_job,
        apply_jobs=apply_jobs,
        apply_runs=apply_runs,
    )


# --- servers --------------------------------------------------------------------------------


def baseline_server(name: str, log_dir: Path) -> tuple[Worker, str]:
    from devtools.devstack import free_port
    from tests.processes import Worker, answers_liveness

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "uvicorn", f"bench.http_baselines:{name}", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--no-access-log"]
    worker = Worker(name, command, "Application startup complete", log_dir, ready=lambda _: answers_liveness(base_url))
    return worker, base_url


def access_log_note() -> str:
    from tests.processes import procfile_commands

    web = procfile_commands()["web"]
    if "--no-access-log" in web:
        return "the Procfile's web line keeps no access log, like the baselines"
    return "the Procfile's web line logs every request (uvicorn's access log, on by default); the baselines do not"


# --- report ---------------------------------------------------------------------------------


@dataclass
class Result:
    route: Route
    sides: tuple[str, ...] = SIDES
    runs: dict[str, list[Run]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.runs = {side: [] for side in self.sides}

    def best(self, side: str) -> Run:
        return max(self.runs[side], key=lambda run: run.rate)


def cell(run: Run) -> str:
    return f"{run.rate:,.0f}{'!' if run.failed else ''}"


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    print()
    print(
        f"wrk: {args.threads} threads, {args.connections} connections, {args.seconds:g} s per run,"
        f" {args.rounds} rounds of project/bare/orm in turn, each side first in turn; best run of each side;"
        " ratio = project req/s / baseline req/s; ! = some answers were not 2xx (see below)"
    )
    header = (
        f"{'route':<8} {'project':>9} {'bare':>9} {'ratio':>6} {'orm':>9} {'ratio':>6}"
        f"   {'p50/p99 ms: project':>20} {'bare':>13} {'orm':>13}"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        project, bare, orm = (result.best(side) for side in SIDES)
        to_bare, to_orm = (project.rate / run.rate if run.rate else math.nan for run in (bare, orm))
        latencies = [f"{run.p50_ms:.1f}/{run.p99_ms:.1f}" for run in (project, bare, orm)]
        print(
            f"{result.route.name:<8} {cell(project):>9} {cell(bare):>9} {to_bare:>6.2f}"
            f" {cell(orm):>9} {to_orm:>6.2f}   {latencies[0]:>20} {latencies[1]:>13}"
            f" {latencies[2]:>13}"
        )
    print()
    for result in results:
        print(f"  {result.route.name:<8} {result.route.label}")
    print_errors(results)


def print_pair_table(results: list[Result], args: argparse.Namespace, sides: tuple[str, str], goal: str) -> None:
    """Two project servers side by side: `sides[0]` req/s over `sides[1]` req/s per route."""
    first, second = sides
    print()
    print(
        f"wrk: {args.threads} threads, {args.connections} connections, {args.seconds:g} s per run,"
        f" {args.rounds} rounds, each side first in turn; best run of each side;"
        f" ratio = {first} req/s / {second} req/s{goal}; ! = some answers were not 2xx"
    )
    header = f"{'route':<8} {first:>9} {second:>9} {'ratio':>6}   {'p50/p99 ms: ' + first:>21} {second:>13}"
    print(header)
    print("-" * len(header))
    for result in results:
        a, b = (result.best(side) for side in sides)
        ratio = a.rate / b.rate if b.rate else math.nan
        latencies = [f"{run.p50_ms:.1f}/{run.p99_ms:.1f}" for run in (a, b)]
        print(f"{result.route.name:<8} {cell(a):>9} {cell(b):>9} {ratio:>6.2f}   {latencies[0]:>21} {latencies[1]:>13}")
    print_errors(results)


def print_errors(results: list[Result]) -> None:
    errors = [
        (result.route.name, side, run)
        for result in results
        for side in result.sides
        for run in result.runs[side]
        if run.failed
    ]
    print()
    if not errors:
        print("every answer of every run was a 2xx")
    for name, side, run in errors:
        shown = ", ".join(f"{n} x {status}" for status, n in sorted(run.statuses.items()))
        print(
            f"ERRORS {name} {side}: {run.failed} of {run.requests} failed ({shown}; socket errors {run.socket_errors})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each side per route")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of unmeasured load per side and route")
    parser.add_argument("--routes", default=",".join(r.name for r in ROUTES), help="comma-separated subset")
    parser.add_argument("--quick", action="store_true", help="2 s per run: a smoke test")
    parser.add_argument(
        "--observability", action="store_true", help="the project with metrics and JSON logs vs without either"
    )
    parser.add_argument("--processes", action="store_true", help="the project with WEB_CONCURRENCY=2 vs 1")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 2.0
    wanted = [name.strip() for name in args.routes.split(",") if name.strip()]
    unknown = set(wanted) - {r.name for r in ROUTES}
    if unknown:
        parser.error(f"unknown routes {sorted(unknown)}; known: {', '.join(r.name for r in ROUTES)}")
    routes = [r for r in ROUTES if r.name in wanted]
    if shutil.which("wrk") is None:
        sys.exit("bench.http needs wrk, the HTTP load generator: sudo apt-get install wrk (Debian/Ubuntu)")

    if args.observability and args.processes:
        parser.error("--observability and --processes are two different comparisons: pick one")
    sides = OBSERVABILITY_SIDES if args.observability else PROCESSES_SIDES if args.processes else SIDES
    with bench_stack("http", replicas=2) as stack:
        from tests.processes import web_server

        root = Path(stack.root)
        runs_per_side = args.rounds + (1 if args.warmup > 0 else 0)
        fixture = seed(stack, apply_runs=len(sides) * runs_per_side, seconds=args.seconds, root=root)
        servers, urls = {}, {}
        for side in sides:
            if side in SIDE_ENVIRONMENT:
                servers[side], urls[side] = web_server(root, name=f"web-{side}", env=SIDE_ENVIRONMENT[side])
            else:
                servers[side], urls[side] = baseline_server(side, root)
        try:
            for server in servers.values():
                server.start()
            shown = ", ".join(f"{side} {url}" for side, url in urls.items())
            print(f"servers: {shown}; {access_log_note()}")
            results = []
            for route in routes:
                result = Result(route, sides)
                options = {"connections": args.connections, "threads": args.threads}
                if args.warmup > 0:
                    for side in sides:
                        run_wrk(route, fixture, urls[side], seconds=args.warmup, **options)
                for round_number in range(args.rounds):
                    # Each round starts with the next side, so an order effect (the machine
                    # warming up or settling after the other side's run) favours none.
                    shift = round_number % len(sides)
                    for side in sides[shift:] + sides[:shift]:
                        run = run_wrk(route, fixture, urls[side], seconds=args.seconds, **options)
                        result.runs[side].append(run)
                        flag = f", {run.failed} failed" if run.failed else ""
                        print(
                            f"  {route.name:<8} {side:<8} {run.rate:>8,.0f} req/s"
                            f"  p50 {run.p50_ms:.1f} ms  p99 {run.p99_ms:.1f} ms{flag}",
                            flush=True,
                        )
                results.append(result)
            if args.observability:
                print_pair_table(results, args, OBSERVABILITY_SIDES, " (goal >= 0.95)")
            elif args.processes:
                print_pair_table(results, args, PROCESSES_SIDES, "")
            else:
                print_table(results, args)
        finally:
            for server in servers.values():
                server.stop()


if __name__ == "__main__":
    main()
