"""Benchmark: analytics events per second ingested into PostgreSQL, end to end.

    cd api && python -m bench.analytics [--events 100000] [--concurrency 8]

Starts its own PostgreSQL and Redis and an RQ `InProcessWorker` on the analytics queue
(its documented command), then POSTs batches of 100 events to /api/analytics/events
(in-process ASGI) and times from the first request to the last event stored in
PostgreSQL. Prints events/s (goal >= 10,000/s) and, as a same-run baseline, the rate of
writing the same events with one INSERT per event through the API's write session.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import httpx

from bench.stack import bench_stack


async def ingest(events: int, concurrency: int) -> float:
    from backend_app.core.config import Settings
    from backend_app.main import create_app

    app = create_app(Settings(_env_file=None))
    batch = {"events": [{"event_type": "page_view", "data": {"path": "/jobs"}} for _ in range(100)]}
    batches = iter(range(events // 100))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
    ):

        async def one_client() -> None:
            for _ in batches:
                (await client.post("/api/analytics/events", json=batch)).raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return started


async def one_insert_per_event(events: int) -> float:
    from sqlalchemy import text

    from backend_app.core.config import Settings
    from backend_app.core.read_replica import close_database, init_database

    router = init_database(Settings(_env_file=None))
    started = time.perf_counter()
    try:
        for _ in range(events):
            async with router.write_session() as session:
                await session.execute(
                    text(
                        "INSERT INTO analytics_events (event_id, event_type, data, occurred_at)"
                        " VALUES (gen_random_uuid(), 'page_view', '{}', now())"
                    )
                )
    finally:
        await close_database()
    return events / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--baseline-events", type=int, default=2000)
    args = parser.parse_args()

    os.environ["LOG_LEVEL"] = "WARNING"
    with bench_stack("analytics", replicas=0) as stack:
        root = stack.root
        from tests.processes import BIN_DIR, Worker

        worker = Worker(
            "rq-analytics",
            [
                str(BIN_DIR / "rq"),
                "worker",
                "analytics",
                "--url",
                os.environ["REDIS_URL"],
                "-q",
                "--worker-class",
                "backend_app.core.rq_worker.InProcessWorker",
            ],
            "",
            root,
        ).start()
        assert stack.primary is not None
        try:
            started = asyncio.run(ingest(args.events, args.concurrency))
            accepted_at = time.perf_counter()
            while int(stack.primary.psql("SELECT count(*) FROM analytics_events")) < args.events:
                if time.perf_counter() - started > 600:
                    raise SystemExit("events not stored within 600 s")
                time.sleep(0.05)
            stored_at = time.perf_counter()
        finally:
            worker.stop()
        rate = args.events / (stored_at - started)
        stack.primary.psql("TRUNCATE analytics_events")
        baseline = asyncio.run(one_insert_per_event(args.baseline_events))
        print(f"analytics events stored end to end: {rate:,.0f}/s  ({args.events:,} events; goal >= 10,000/s)")
        print(f"  accepted by the API at {args.events / (accepted_at - started):,.0f}/s")
        print(f"  baseline, one INSERT per event: {baseline:,.0f}/s -> buffered ingestion is {rate / baseline:.1f}x")


if __name__ == "__main__":
    main()
