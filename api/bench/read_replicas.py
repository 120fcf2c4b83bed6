"""Benchmark: what the read-replica router costs, and how it rides out a dead replica.

    cd api && python -m bench.read_replicas [--requests 2000] [--concurrency 16]

Starts its own PostgreSQL primary with two streaming replicas (devtools.devstack) in a
temporary folder, with the production defaults for checks, bans and lag limits. Prints,
from one run:

1. read throughput of `GET /api/jobs` (a page of 20 of 200 open jobs) through the router,
   divided by the same endpoint on a plain session on the primary (rounds alternate, the
   median ratio is reported; goal >= 0.95);
2. with one replica killed (`pg_ctl stop -m immediate`) mid-run under that load: the reads
   that failed (goal 0), and the time from the replica's restart until it serves reads
   again (goal <= 5 s).

The app runs in this process (httpx ASGI transport), as in bench.outbox: figures are ratios
or come from the same run, because the machine is shared and absolute times drift.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx

from bench.stack import bench_stack

if TYPE_CHECKING:
    from devtools.devstack import LocalStack

ROUNDS = 6
LIST_PATH = "/api/jobs?limit=20"


async def measure_throughput(client: httpx.AsyncClient, requests: int, concurrency: int) -> float:
    remaining = iter(range(requests))

    async def one_client() -> None:
        for _ in remaining:
            response = await client.get(LIST_PATH)
            response.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return requests / (time.perf_counter() - started)


def seed(stack: LocalStack) -> None:
    assert stack.primary is not None
    stack.primary.psql(
        "INSERT INTO users (email, username, first_name, last_name, password_hash, role)"
        " VALUES ('acme@example.com', 'acme', 'Acme', 'Corp', 'x', 'employer');"
        " INSERT INTO jobs (employer_id, title, description, location)"
        " SELECT 1, 'Engineer ' || n, 'Build things, number ' || n, 'Remote' FROM generate_series(1, 200) n"
    )
    stack.wait_for_replicas()


async def throughput_ratio(requests: int, concurrency: int) -> tuple[float, float, float]:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from backend_app.core.config import Settings
    from backend_app.core.database import create_engine
    from backend_app.core.read_replica import AsyncReadSession, get_db_read
    from backend_app.main import create_app

    settings = Settings(_env_file=None)
    routed_app = create_app(settings)
    plain_app = create_app(settings)
    plain_engine = create_engine(
        settings.database_url, pool_size=settings.db_read_pool_size, max_overflow=settings.db_read_max_overflow
    )
    plain_sessions = async_sessionmaker(plain_engine, class_=AsyncReadSession, expire_on_commit=False)

    async def plain_primary_session() -> AsyncIterator[AsyncReadSession]:
        async with plain_sessions() as session:
            yield session

    plain_app.dependency_overrides[get_db_read] = plain_primary_session
    ratios, routed_rates, plain_rates = [], [], []
    # One lifespan serves both apps: they share this process's router (the plain one ignores it).
    async with routed_app.router.lifespan_context(routed_app):
        routed = httpx.AsyncClient(transport=httpx.ASGITransport(app=routed_app), base_url="http://bench")
        plain = httpx.AsyncClient(transport=httpx.ASGITransport(app=plain_app), base_url="http://bench")
        async with routed, plain:
            await measure_throughput(routed, 300, concurrency)  # warm-up: pools, statement caches
            await measure_throughput(plain, 300, concurrency)
            for _ in range(ROUNDS):
                plain_rate = await measure_throughput(plain, requests, concurrency)
                routed_rate = await measure_throughput(routed, requests, concurrency)
                plain_rates.append(plain_rate)
                routed_rates.append(routed_rate)
                ratios.append(routed_rate / plain_rate)
    await plain_engine.dispose()
    return statistics.median(ratios), statistics.median(routed_rates), statistics.median(plain_rates)


async def replica_killed_under_load(stack: LocalStack, concurrency: int, down_seconds: float) -> dict[str, Any]:
    from backend_app.core.config import Settings
    from backend_app.core.read_replica import get_database_router
    from backend_app.main import create_app

    victim = stack.replicas[0]
    app = create_app(Settings(_env_file=None))
    outcomes = {"ok": 0, "failed": 0}
    failures: list[str] = []
    stop = asyncio.Event()

    async def one_client(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            try:
                response = await client.get(LIST_PATH)
            except Exception as error:  # counted and shown: a failed read is what we measure
                outcomes["failed"] += 1
                failures.append(f"{type(error).__name__}: {error}"[:300])
                continue
            if response.status_code == 200:
                outcomes["ok"] += 1
            else:
                outcomes["failed"] += 1
                failures.append(f"{response.status_code} {response.text[:200]}")

    async with app.router.lifespan_context(app):
        node = get_database_router().replicas[0]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
            load = [asyncio.create_task(one_client(client)) for _ in range(concurrency)]
            await asyncio.sleep(2)
            served_before_kill = node.served
            await asyncio.to_thread(victim.stop, "immediate")
            await asyncio.sleep(down_seconds)
            await asyncio.to_thread(victim.start)
            restarted_at = time.monotonic()
            served_at_restart = node.served
            # Polls a counter the load's own requests move; 10 ms is the resolution.
            while node.served == served_at_restart and time.monotonic() - restarted_at < 60:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            back_after = time.monotonic() - restarted_at
            await asyncio.sleep(1)
            stop.set()
            await asyncio.gather(*load)
        failovers = get_database_router().counters.failovers
    return {
        "reads": outcomes["ok"] + outcomes["failed"],
        "failed": outcomes["failed"],
        "back_after": back_after,
        "failovers": failovers,
        "served_before_kill": served_before_kill,
        "failures": failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per throughput round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--down", type=float, default=3.0, help="seconds the killed replica stays down")
    args = parser.parse_args()

    from backend_app.core.config import get_settings
    from backend_app.core.logging import configure_logging

    configure_logging("ERROR")
    with bench_stack("read-replicas", replicas=2) as stack:
        seed(stack)

        ratio, routed, plain = asyncio.run(throughput_ratio(args.requests, args.concurrency))
        print(f"list reads through the router / plain primary session: {ratio:.3f}  (goal >= 0.95)")
        print(f"  medians over {ROUNDS} alternating rounds: {routed:.0f} vs {plain:.0f} req/s, in-process ASGI")

        result = asyncio.run(replica_killed_under_load(stack, args.concurrency, args.down))
        print(
            f"replica killed under load: {result['failed']:.0f} failed of {result['reads']:.0f} reads (goal 0),"
            f" {result['failovers']:.0f} statement(s) moved to another node"
        )
        for failure in result["failures"][:5]:
            print(f"  failed read: {failure}")
        print(
            f"restarted replica serving again after {result['back_after']:.2f} s (goal <= 5 s;"
            f" down {args.down:g} s, ban {get_settings().db_replica_ban_seconds:g} s,"
            f" checks every {get_settings().db_health_check_interval:g} s)"
        )


if __name__ == "__main__":
    main()
