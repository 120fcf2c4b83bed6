"""Benchmark: the cost of recording background work through the outbox, and its latency.

    cd api && python -m bench.outbox [--requests 500] [--rounds 16] [--tasks 200]

Starts its own PostgreSQL primary + replica and Redis (devtools.devstack) in a temporary
folder, plus the relay, a Celery worker and the notifications queue's RQ worker (`BatchWorker`) with
their documented commands.
Prints, from one run:

1. throughput of an API write that also records a task through the outbox, divided by the
   same write without it (paired rounds, which side runs first alternating; the median ratio
   and the middle half of the ratios are reported; goal >= 0.9);
2. time from the write's commit to the task starting on a worker, p50 and p99, per backend
   (goal p50 <= 10 ms, p99 <= 50 ms).

Figures are ratios or come from the same run: the machine is shared and absolute times drift.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime

import httpx
from fastapi import APIRouter
from sqlalchemy import text

from backend_app.core.read_replica import WriteSession
from bench.stack import bench_stack


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def bench_routes() -> APIRouter:
    # Imported here: these modules read the settings, which exist once the stack is up.
    from backend_app.outbox import service as outbox
    from backend_app.tasks.models import TaskBackend

    router = APIRouter(prefix="/bench")

    @router.post("/plain", status_code=201)
    async def plain_write(session: WriteSession) -> dict[str, int]:
        row_id = await session.scalar(text("INSERT INTO bench_events (kind) VALUES ('plain') RETURNING id"))
        return {"id": int(row_id or 0)}

    @router.post("/with-outbox", status_code=201)
    async def write_with_outbox(session: WriteSession) -> dict[str, int]:
        row_id = await session.scalar(text("INSERT INTO bench_events (kind) VALUES ('outbox') RETURNING id"))
        await outbox.add_named(
            session=session,
            backend=TaskBackend.rq,
            queue="analytics",
            task="backend_app.core.rq_tasks.ping_job",
        )
        return {"id": int(row_id or 0)}

    return router


async def measure_throughput(client: httpx.AsyncClient, path: str, requests: int, concurrency: int) -> float:
    remaining = iter(range(requests))

    async def one_client() -> None:
        for _ in remaining:
            response = await client.post(path)
            response.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return requests / (time.perf_counter() - started)


async def throughput_ratios(requests: int, concurrency: int, rounds: int) -> tuple[list[float], float, float]:
    from backend_app.core.config import Settings
    from backend_app.core.read_replica import get_database_router
    from backend_app.main import create_app

    app = create_app(Settings(_env_file=None))
    app.include_router(bench_routes())
    ratios, plain_rates, outbox_rates = [], [], []
    async with app.router.lifespan_context(app):
        async with get_database_router().write_session() as session:
            await session.execute(text("CREATE TABLE IF NOT EXISTS bench_events (id bigserial PRIMARY KEY, kind text)"))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            await measure_throughput(client, "/bench/plain", 200, concurrency)  # warm-up
            await measure_throughput(client, "/bench/with-outbox", 200, concurrency)
            for round_number in range(rounds):
                # Which side goes first alternates, so a drift in the machine's speed (or a
                # checkpoint, or autovacuum) during a pair does not always favour the same one.
                paths = ["/bench/plain", "/bench/with-outbox"][:: 1 if round_number % 2 == 0 else -1]
                rate = {path: await measure_throughput(client, path, requests, concurrency) for path in paths}
                plain_rates.append(rate["/bench/plain"])
                outbox_rates.append(rate["/bench/with-outbox"])
                ratios.append(rate["/bench/with-outbox"] / rate["/bench/plain"])
    return ratios, statistics.median(plain_rates), statistics.median(outbox_rates)


async def commit_to_start_latencies(tasks: int, gap_seconds: float) -> dict[str, list[float]]:
    from backend_app.core.config import Settings
    from backend_app.core.read_replica import close_database, init_database
    from backend_app.outbox import service as outbox
    from backend_app.tasks.models import TaskBackend

    router = init_database(Settings(_env_file=None))
    committed: dict[str, tuple[str, datetime]] = {}
    backends = [
        (TaskBackend.celery, "emails", "backend_app.core.celery_tasks.ping"),
        (TaskBackend.rq, "notifications", "backend_app.core.rq_tasks.ping_job"),
    ]
    try:
        for n in range(tasks):
            backend, queue, name = backends[n % 2]
            async with router.write_session() as session:
                task_id = await outbox.add_named(session=session, backend=backend, queue=queue, task=name)
            committed[task_id] = (backend.value, datetime.now(UTC))
            await asyncio.sleep(gap_seconds)
        deadline = time.monotonic() + 120
        while True:
            async with router.read_session() as session:
                rows = (
                    await session.execute(text("SELECT id, started_at FROM task_records WHERE started_at IS NOT NULL"))
                ).all()
            if len(rows) >= len(committed) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    finally:
        await close_database()
    latencies: dict[str, list[float]] = {"celery": [], "rq": []}
    for task_id, started_at in rows:
        backend, commit_time = committed[task_id]
        latencies[backend].append((started_at - commit_time).total_seconds() * 1000)
    missing = len(committed) - len(rows)
    if missing:
        print(f"warning: {missing} task(s) did not start within the deadline")
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500, help="requests per side in each throughput round")
    parser.add_argument("--rounds", type=int, default=16, help="throughput rounds (pairs of runs)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--tasks", type=int, default=200, help="tasks for the latency measurement")
    parser.add_argument("--gap", type=float, default=0.15, help="seconds between latency tasks")
    args = parser.parse_args()

    from backend_app.core.logging import configure_logging

    configure_logging("WARNING")
    with bench_stack("outbox", replicas=1) as stack:
        root = stack.root
        from tests.processes import celery_worker, relay, rq_worker

        ratios, plain, with_outbox = asyncio.run(throughput_ratios(args.requests, args.concurrency, args.rounds))
        quartiles = statistics.quantiles(ratios, n=4)
        print(f"write throughput with outbox / without: {statistics.median(ratios):.3f}  (goal >= 0.9)")
        print(
            f"  {args.rounds} paired rounds of {args.requests} requests: middle half of the ratios"
            f" {quartiles[0]:.3f}-{quartiles[2]:.3f}; medians {with_outbox:.0f} vs {plain:.0f} req/s, in-process ASGI"
        )

        # The throughput rounds recorded thousands of tasks; they must not queue ahead of these.
        assert stack.primary is not None
        stack.primary.psql("TRUNCATE outbox_messages, task_records, bench_events")
        # The Procfile's own lines: the relay, the celery worker and the rq pool.
        workers = [relay(root), celery_worker(root), rq_worker(root)]
        try:
            for worker in workers:
                worker.start()
            latencies = asyncio.run(commit_to_start_latencies(args.tasks, args.gap))
        finally:
            for worker in workers:
                worker.stop()
        for backend, values in latencies.items():
            if values:
                p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
                print(
                    f"commit -> task started, {backend}: p50 {p50:.1f} ms, p99 {p99:.1f} ms"
                    f"  ({len(values)} tasks; goal p50 <= 10 ms, p99 <= 50 ms)"
                )


if __name__ == "__main__":
    main()
