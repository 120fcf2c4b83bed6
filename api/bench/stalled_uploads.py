"""Benchmark: other users' sign-ins, sign-ups and posts while uploads stall (issue 13).

    cd api && python -m bench.stalled_uploads [--seconds 20] [--clients 4]

Starts its own PostgreSQL (primary and one replica) and Redis and the Procfile's `web` line
(a real uvicorn with the default pools: 10 + 10 overflow primary connections). Then, for 0
(the baseline), 20 and 200 stalled uploads, `--clients` loops of other users sign in
(POST /api/auth/login), sign up (POST /api/auth/register) and post (POST /api/posts) for
`--seconds` each. A stalled upload is a raw socket sending the headers of
POST /api/videos/upload with Content-Length 100000, the file part's header and 100 bytes,
then nothing; two per attacking account, so a per-user limit of two lets every one in.

Prints for each phase the p50/p99 latency and success ratio (2xx) of each request kind, the
primary connections in use (highest /health/database sample), what the stalled uploads had
been answered by the end of the phase, and the ratios to the baseline measured in the same
run. Rate limits are off in the web process (RATE_LIMITS_ENABLED=false): the loops sign up
more accounts from one address than the registration limit allows, and this measures
connections, not throttles.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from bench.stack import bench_stack
from tests.accounts import PASSWORD
from tests.videos.stalled import close_all, open_stalled_uploads, statuses

if TYPE_CHECKING:
    from devtools.devstack import LocalStack

KINDS = ("login", "register", "post")
REQUEST_TIMEOUT = 30.0


@dataclass
class Phase:
    name: str
    stalled: int
    latencies: dict[str, list[float]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    successes: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    primary_in_use: int = 0
    answers: Counter[str] = field(default_factory=Counter)

    def percentile(self, kind: str, q: float) -> float:
        values = sorted(self.latencies[kind])
        if not values:
            return float("nan")
        return values[min(len(values) - 1, round(q * (len(values) - 1)))] * 1000

    def success_ratio(self, kind: str) -> float:
        total = self.successes[kind] + self.failures[kind]
        return self.successes[kind] / total if total else float("nan")


def seed_attackers(stack: LocalStack, count: int) -> list[str]:
    """`count` accounts inserted on the primary; their access tokens."""
    from backend_app.core.security import create_access_token

    assert stack.primary is not None
    ids = stack.primary.psql(
        "INSERT INTO users (email, username, first_name, last_name, password_hash, role)"
        " SELECT 'attacker' || n || '@example.com', 'attacker' || n, 'A', 'Ttacker', 'x', 'job_seeker'"
        f" FROM generate_series(1, {count}) AS n RETURNING id"
    ).splitlines()
    return [create_access_token(int(line)) for line in ids if line.strip().isdigit()]


def admin_token(stack: LocalStack) -> str:
    from backend_app.core.security import create_access_token

    assert stack.primary is not None
    user_id = stack.primary.psql(
        "INSERT INTO users (email, username, first_name, last_name, password_hash, role, is_admin)"
        " VALUES ('ops@example.com', 'ops', 'O', 'Ps', 'x', 'job_seeker', true) RETURNING id"
    ).split()[0]
    return create_access_token(int(user_id))


async def register(client: httpx.AsyncClient, username: str) -> httpx.Response:
    return await client.post(
        "/api/auth/register",
        json={
            "email": f"{username}@example.com",
            "username": username,
            "password": PASSWORD,
            "first_name": "Other",
            "last_name": "User",
            "role": "job_seeker",
        },
    )


async def other_user(
    client: httpx.AsyncClient, index: int, token: str, phase: Phase, deadline: float, names: itertools.count[int]
) -> None:
    """One user signing in and posting, and newcomers signing up, in turn until `deadline`."""
    email = f"other{index}@example.com"
    headers = {"Authorization": f"Bearer {token}"}
    # Each loop starts at another kind, so every kind is measured even when each takes long.
    for kind in itertools.islice(itertools.cycle(KINDS), index, None):
        if time.monotonic() >= deadline:
            return
        started = time.perf_counter()
        try:
            if kind == "login":
                response = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
            elif kind == "register":
                response = await register(client, f"newcomer{next(names)}")
            else:
                response = await client.post("/api/posts", json={"body": "still here"}, headers=headers)
            ok = response.is_success
        except httpx.HTTPError:
            ok = False
        phase.latencies[kind].append(time.perf_counter() - started)
        (phase.successes if ok else phase.failures)[kind] += 1


async def watch_primary(client: httpx.AsyncClient, admin: str, phase: Phase, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            report = (await client.get("/health/database", headers={"Authorization": f"Bearer {admin}"})).json()
            pool = report["primary"]["pool"]
            phase.primary_in_use = max(phase.primary_in_use, pool["in_use"])
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def run_phase(
    base_url: str, phase: Phase, attackers: list[str], others: list[str], admin: str, *, seconds: float
) -> Phase:
    names = itertools.count(phase.stalled * 100_000)
    limits = httpx.Limits(max_connections=len(others) + 4)
    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT, limits=limits) as client:
        # Two stalled uploads per attacking account.
        tokens = [attackers[i // 2] for i in range(phase.stalled)]
        stalled = await open_stalled_uploads(base_url, tokens)
        await asyncio.sleep(1.0)  # let them reach the route
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_primary(client, admin, phase, stop))
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(other_user(client, i, t, phase, deadline, names) for i, t in enumerate(others)))
        stop.set()
        await watcher
        for answer in await statuses(stalled):
            phase.answers["still stalled" if answer is None else str(answer)] += 1
        await close_all(stalled)
    return phase


def row(phase: Phase) -> str:
    cells = [f"{phase.name:<12}", f"{phase.stalled:>4}"]
    for kind in KINDS:
        cells.append(
            f"{phase.percentile(kind, 0.5):7.0f} {phase.percentile(kind, 0.99):7.0f} {phase.success_ratio(kind):5.2f}"
        )
    cells.append(f"{phase.primary_in_use:>3}")
    return "  ".join(cells)


def ratio_row(phase: Phase, baseline: Phase) -> str:
    cells = [f"{phase.name + ' / base':<12}", "    "]
    for kind in KINDS:
        p50 = phase.percentile(kind, 0.5) / baseline.percentile(kind, 0.5)
        p99 = phase.percentile(kind, 0.99) / baseline.percentile(kind, 0.99)
        success = phase.success_ratio(kind) / baseline.success_ratio(kind)
        cells.append(f"{p50:6.2f}x {p99:6.2f}x {success:5.2f}")
    return "  ".join(cells)


async def wait_until_idle(base_url: str, admin: str, seconds: float = 60) -> None:
    """Until the primary pool has nothing in use (the previous phase's uploads let go)."""
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        while time.monotonic() < deadline:
            report = (await client.get("/health/database", headers={"Authorization": f"Bearer {admin}"})).json()
            if report["primary"]["pool"]["in_use"] <= 1:  # the health check's own
                return
            await asyncio.sleep(0.5)


async def attack(base_url: str, stack: LocalStack, *, seconds: float, clients: int) -> list[Phase]:
    attackers = seed_attackers(stack, 100)
    admin = admin_token(stack)
    others = []
    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT) as client:
        for index in range(clients):
            (await register(client, f"other{index}")).raise_for_status()
            login = await client.post(
                "/api/auth/login", json={"email": f"other{index}@example.com", "password": PASSWORD}
            )
            others.append(login.raise_for_status().json()["access_token"])
    phases = []
    for name, stalled in (("baseline", 0), ("stalled 20", 20), ("stalled 200", 200)):
        await wait_until_idle(base_url, admin)
        phases.append(await run_phase(base_url, Phase(name, stalled), attackers, others, admin, seconds=seconds))
        print(f"[bench] {name}: done", flush=True)
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--clients", type=int, default=4, help="other users' request loops")
    args = parser.parse_args()

    with bench_stack("stalled-uploads", replicas=1) as stack:
        from tests.processes import web_server

        media = stack.root / "media"
        web, base_url = web_server(
            Path(stack.root),
            env={"MEDIA_ROOT": str(media), "RATE_LIMITS_ENABLED": "false", "LOG_LEVEL": "WARNING"},
        )
        web.start()
        try:
            phases = asyncio.run(attack(base_url, stack, seconds=args.seconds, clients=args.clients))
        finally:
            web.stop()
        baseline = phases[0]
        print()
        print(f"{args.clients} other users for {args.seconds:g} s per phase; latencies in ms; primary pool 10 + 10")
        header = "  ".join(f"{kind + ' p50/p99/ok':>21}" for kind in KINDS)
        print(f"{'phase':<12}  {'stl':>4}  {header}  {'db':>3}")
        for phase in phases:
            print(row(phase))
        for phase in phases[1:]:
            print(ratio_row(phase, baseline))
        for phase in phases[1:]:
            answers = ", ".join(f"{count} {answer}" for answer, count in sorted(phase.answers.items()))
            print(f"{phase.name}: stalled uploads at the end of the phase: {answers}")
        print("db: highest primary connections in use seen on /health/database during the phase")


if __name__ == "__main__":
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    main()
