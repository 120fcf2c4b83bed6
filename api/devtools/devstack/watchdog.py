"""`run`'s watchdog: runs the command, and starts again a local server that died meanwhile."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Sequence

from devtools.devstack.common import StackError
from devtools.devstack.postgres import PostgresServer
from devtools.devstack.redis import RedisServer
from devtools.devstack.stack import LocalStack

# How often `run` checks that the servers it started are still up.
WATCH_INTERVAL_SECONDS = 2.0


def restart_stopped_servers(stack: LocalStack) -> None:
    """Start again a server that died under `make dev` (an OOM kill, a crash, a stray kill),
    as a process manager would: the app's processes reconnect on their own."""
    servers: list[PostgresServer | RedisServer] = [
        *([stack.primary] if stack.primary else []),
        *stack.replicas,
        *([stack.redis] if stack.redis else []),
    ]
    for server in servers:
        if server.is_running():
            continue
        name = "Redis" if isinstance(server, RedisServer) else f"PostgreSQL {server.name}"
        say(f"{name} on port {server.port} stopped; starting it again")
        try:
            server.start()
        except StackError as error:
            say(f"{name} could not be started again: {error}")


def run_command(command: Sequence[str], env: dict[str, str], stack: LocalStack | None = None) -> int:
    child = subprocess.Popen(list(command), env=env)

    def forward(signum: int, _frame: object) -> None:
        # Ctrl-C reaches the child from the terminal itself; a TERM sent to us is passed on.
        if signum in (signal.SIGTERM, signal.SIGHUP):
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, forward)
    while True:
        try:
            return child.wait(timeout=WATCH_INTERVAL_SECONDS)
        except subprocess.TimeoutExpired:
            if stack is not None:
                restart_stopped_servers(stack)


def say(message: str) -> None:
    # A closed terminal or pipe must not stop us before the servers are stopped.
    with contextlib.suppress(OSError):
        print(f"devstack: {message}", file=sys.stderr, flush=True)
