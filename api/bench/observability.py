"""Benchmark: what metrics and JSON logs cost per request, in-process, without HTTP's noise.

    cd api && ../.venv/bin/python -m bench.observability [--requests 3200] [--rounds 5]

`python -m bench.http --observability` measures the same over real HTTP, but on this shared
2-core machine its runs differ by about 5 % from one to the next, more than the effect. This
one drives the app itself (ASGI calls, 32 at a time, each followed by the access line uvicorn
would write) and times each configuration in turn, each round starting with the next one:

- observed: METRICS_ENABLED=true, LOG_FORMAT=json (as operators run it);
- quiet: METRICS_ENABLED=false, LOG_FORMAT=text;
- metrics only: METRICS_ENABLED=true, LOG_FORMAT=text.

Routes: the liveness probe (the smallest request there is, so the fixed cost shows most) and
one job read on a replica (the bench.http seed data on its own PostgreSQL primary, two
replicas and Redis). Prints the best µs per request of each and quiet ÷ each (goal >= 0.95).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

from bench.http import seed
from bench.stack import bench_stack

CONCURRENCY = 32
CONFIGURATIONS = {
    "observed": {"metrics_enabled": True, "log_format": "json"},
    "quiet": {"metrics_enabled": False, "log_format": "text"},
    "metrics only": {"metrics_enabled": True, "log_format": "text"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3200, help="requests per timed run")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with bench_stack("observability", replicas=2) as stack:
        fixture = seed(stack, apply_runs=1, seconds=1, root=Path(stack.root))
        asyncio.run(measure(["/health", f"/api/jobs/{fixture.job_id}"], args.requests, args.rounds))


def configured_apps() -> dict[str, tuple[Any, logging.Logger]]:
    """Each configuration's app, with an access logger in its format writing to nowhere."""
    from backend_app.core.config import Settings
    from backend_app.core.logging import _handler
    from backend_app.main import create_app

    apps: dict[str, tuple[Any, logging.Logger]] = {}
    for name, settings in CONFIGURATIONS.items():
        app = create_app(Settings(rate_limits_enabled=False, **settings))
        access = logging.getLogger(f"bench.access.{name}")
        handler = _handler(str(settings["log_format"]))
        handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the bench
        access.handlers, access.propagate, access.level = [handler], False, logging.INFO
        apps[name] = (app, access)
    return apps


async def measure(paths: list[str], requests: int, rounds: int) -> None:
    apps = configured_apps()
    names = list(apps)
    observed_app = apps["observed"][0]
    # One lifespan: the database router is one per process, and the flushing tasks run throughout.
    async with observed_app.router.lifespan_context(observed_app):
        for path in paths:
            best = dict.fromkeys(names, float("inf"))
            for round_number in range(rounds):
                shift = round_number % len(names)
                for name in names[shift:] + names[:shift]:
                    app, access = apps[name]
                    await drive(app, access, path, requests // 10)  # warm
                    started = time.perf_counter()
                    await drive(app, access, path, requests)
                    best[name] = min(best[name], (time.perf_counter() - started) / requests)
            print(f"{path}:")
            for name in names:
                ratio = best["quiet"] / best[name]
                print(f"  {name:<13} {best[name] * 1e6:7.1f} µs/request   quiet / {name}: {ratio:.3f}")
    print("goal: quiet / observed >= 0.95")


async def drive(app: Any, access: logging.Logger, path: str, requests: int) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"user-agent", b"bench")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def one() -> None:
        status = 0

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:50000", "GET", path, "1.1", status)

        await app(dict(scope), receive, send)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")

    async def client(count: int) -> None:
        for _ in range(count):
            await one()

    await asyncio.gather(*(client(requests // CONCURRENCY) for _ in range(CONCURRENCY)))


if __name__ == "__main__":
    main()
