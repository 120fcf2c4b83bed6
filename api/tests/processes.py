"""Start real processes the way an operator does (the documented commands) and wait for them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

API_DIR = Path(__file__).resolve().parents[1]
REPO_DIR = API_DIR.parent
# The console scripts (celery, rq) of the interpreter running the tests.
BIN_DIR = Path(sys.executable).parent


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


async def wait_until(condition: Callable[[], bool], *, seconds: float = 30, what: str = "condition") -> None:
    """Poll `condition` until it holds; fail naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(0.1)


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


class Worker:
    """A real worker process started with its documented command from api/."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        ready_text: str,
        log_dir: Path,
        ready: Callable[[Worker], bool] | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.ready_text = ready_text
        self.ready = ready  # a further check once `ready_text` is printed
        self.log = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> Worker:
        self._output = self.log.open("ab")
        self.process = subprocess.Popen(
            self.command,
            cwd=API_DIR,
            env=dict(os.environ),
            stdout=self._output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        offset = self.log.stat().st_size if self.log.exists() else 0
        deadline = time.monotonic() + timeout
        while self.ready_text not in self.log.read_text(errors="replace")[offset:] or (
            self.ready is not None and not self.ready(self)
        ):
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"{self.name} not ready within {timeout}s:\n{self.output()}")
            time.sleep(0.1)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def children(self) -> list[int]:
        """Child process ids, oldest first."""
        assert self.process is not None
        found = []
        for status in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = status.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                found.append((int(fields[19]), int(status.parent.name)))  # (start time, pid)
        return [pid for _, pid in sorted(found)]

    def kill(self) -> None:
        """SIGKILL the whole process group: no clean-up, as when a machine dies."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._output.close()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._output.close()


def celery_worker(log_dir: Path, name: str = "celery") -> Worker:
    return Worker(
        name,
        [
            str(BIN_DIR / "celery"),
            "-A",
            "backend_app.core.celery_app",
            "worker",
            "--loglevel=info",
            "-Q",
            "emails",
            "--concurrency=1",
            "-n",
            f"{name}@%h",
        ],
        "ready.",
        log_dir,
    )


def in_rq_main_loop(worker: Worker) -> bool:
    """Whether an RQ worker is past start-up. It prints `*** Listening on` before it takes the
    scheduler lock and installs its signal handlers, and exits if Redis fails in between; only
    its main loop marks it idle (or busy) in Redis."""
    from rq.worker import Worker as RQWorker

    from backend_app.core.rq_app import get_redis

    assert worker.process is not None
    return any(
        found.pid == worker.process.pid and found.get_state() != "started"
        for found in RQWorker.all(connection=get_redis())
    )


def rq_worker_of_class(log_dir: Path, worker_class: str, *queues: str, name: str | None = None) -> Worker:
    """`rq worker QUEUES --worker-class backend_app.core.rq_worker.<worker_class>`: the
    documented commands for the high-volume queues (BatchWorker, InProcessWorker) and video
    (PreloadedWorker)."""
    return Worker(
        name or f"rq-{worker_class}",
        [
            str(BIN_DIR / "rq"),
            "worker",
            *queues,
            "--url",
            os.environ["REDIS_URL"],
            "--worker-class",
            f"backend_app.core.rq_worker.{worker_class}",
        ],
        "Listening on",
        log_dir,
        ready=in_rq_main_loop,
    )


def rq_worker(log_dir: Path, name: str = "rq") -> Worker:
    return Worker(
        name,
        [
            str(BIN_DIR / "rq"),
            "worker",
            "notifications",
            "analytics",
            "video_processing",
            "--url",
            os.environ["REDIS_URL"],
            "--with-scheduler",
            "--name",
            f"{name}-{os.getpid()}-{time.monotonic_ns()}",
        ],
        "Listening on",
        log_dir,
        ready=in_rq_main_loop,
    )


def relay(log_dir: Path, name: str = "relay") -> Worker:
    return Worker(name, [sys.executable, "-m", "backend_app.outbox.relay"], "outbox relay started", log_dir)
