"""Start real processes the way an operator does (the documented commands) and wait for them."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

API_DIR = Path(__file__).resolve().parents[1]
REPO_DIR = API_DIR.parent


@contextmanager
def running(
    command: Sequence[str], *, env: dict[str, str] | None = None, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` from api/ in its own process group; stop the whole group afterwards."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            list(command),
            cwd=API_DIR,
            env=env if env is not None else dict(os.environ),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)


def wait_for_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode}:\n{log.read_text()}")
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer within {timeout}s:\n{log.read_text()}") from None
            time.sleep(0.1)
