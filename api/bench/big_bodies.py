"""Benchmark: /health latency while clients send 19 MB JSON bodies (issue 13).

    cd api && ../.venv/bin/python -m bench.big_bodies [--seconds 10] [--attackers 4]

Starts its own PostgreSQL and Redis and the Procfile's `web` line (one uvicorn process),
then measures GET /health (p50/p99, one request at a time) for `--seconds` alone (the
baseline) and then while `--attackers` clients send, over and over, a 19 MB JSON body to
the anonymous POST /api/analytics/events: half of them declare it (Content-Length), half
send it chunked; each attacker is a process of its own with a raw socket, so its CPU is
not the measuring client's. Prints both phases, the ratio of their p99s (the goal: within 2x), and
what the attackers were answered and how long each answer took.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import time
from collections import Counter
from multiprocessing import Process, Queue
from pathlib import Path

import httpx

from bench.stack import bench_stack

BODY_BYTES = 19 * 1024 * 1024
CHUNK = 256 * 1024


def big_body() -> bytes:
    # A valid JSON document: one event whose data is a 19 MB string.
    return b'{"events": [{"event_type": "page_view", "data": {"x": "' + b"a" * BODY_BYTES + b'"}}]}'


def attack(base_url: str, chunked: bool, seconds: float, results: Queue[tuple[str, float]]) -> None:
    """One attacker, in its own process (so its CPU is not the measuring client's): a raw
    socket that sends the whole 19 MB body, then reads the answer; again and again."""
    host, port = base_url.removeprefix("http://").split(":")
    body = big_body()
    head = "POST /api/analytics/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {len(body)}\r\n\r\n"
    payload = head.encode()
    if chunked:
        payload += b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + CHUNK]), body[i : i + CHUNK]) for i in range(0, len(body), CHUNK)
        )
        payload += b"0\r\n\r\n"
    else:
        payload += body
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            with socket.create_connection((host, int(port)), timeout=60) as connection:
                with contextlib.suppress(OSError):  # the server may answer and close mid-body
                    connection.sendall(payload)
                reply = connection.recv(64)
            answer = reply.split(b" ")[1].decode() if reply.startswith(b"HTTP/1.1 ") else "closed"
        except OSError as error:
            answer = type(error).__name__
        results.put((answer, time.perf_counter() - started))


async def health_latencies(base_url: str, seconds: float) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = await client.get("/health")
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
            await asyncio.sleep(0.01)
    return latencies


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else float("nan")


async def measure(base_url: str, seconds: float, attackers: int) -> None:
    baseline = await health_latencies(base_url, seconds)
    results: Queue[tuple[str, float]] = Queue()
    processes = [
        Process(target=attack, args=(base_url, n % 2 == 1, seconds + 1, results), daemon=True) for n in range(attackers)
    ]
    for process in processes:
        process.start()
    await asyncio.sleep(0.5)
    attacked = await health_latencies(base_url, seconds)
    for process in processes:
        process.join(timeout=120)
    answers: Counter[str] = Counter()
    took = []
    while not results.empty():
        answer, duration = results.get()
        answers[answer] += 1
        took.append(duration)
    print()
    print(f"GET /health, {seconds:g} s each; {attackers} attacker processes sending {BODY_BYTES >> 20} MB JSON bodies")
    print(f"{'phase':<10} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for name, values in (("baseline", baseline), ("attacked", attacked)):
        print(f"{name:<10} {len(values):>8} {p(values, 50):>8.1f} {p(values, 99):>8.1f}")
    print(f"p99 attacked / baseline: {p(attacked, 99) / p(baseline, 99):.2f}x (goal: at most 2x)")
    shown = ", ".join(f"{count} x {answer}" for answer, count in sorted(answers.items()))
    median = statistics.median(took) * 1000 if took else float("nan")
    print(f"attackers were answered: {shown}; median answer in {median:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--attackers", type=int, default=4, help="clients sending big bodies")
    args = parser.parse_args()
    with bench_stack("big-bodies", replicas=0) as stack:
        from tests.processes import web_server

        web, base_url = web_server(Path(stack.root), env={"RATE_LIMITS_ENABLED": "false", "LOG_LEVEL": "WARNING"})
        web.start()
        try:
            asyncio.run(measure(base_url, args.seconds, args.attackers))
        finally:
            web.stop()


if __name__ == "__main__":
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    main()
