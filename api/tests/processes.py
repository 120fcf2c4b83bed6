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
PROCFILE = REPO_DIR / "Procfile"


def procfile_commands(procfile: Path = PROCFILE) -> dict[str, str]:
    """The Procfile's entries, name to command line: what `make dev` runs, and so the tests."""
    entries = {}
    for line in procfile.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


def procfile_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment with the test interpreter's scripts first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra or {})
    return env


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
        *,
        cwd: Path = API_DIR,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.ready_text = ready_text
        self.ready = ready  # a further check once `ready_text` is printed
        self.log = log_dir / f"{name}.log"
        self.cwd = cwd
        self.extra_env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> Worker:
        self._output = self.log.open("ab")
        self.process = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env=procfile_environment(self.extra_env),
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


def procfile_worker(
    entry: str,
    log_dir: Path,
    *,
    ready_text: str,
    name: str | None = None,
    ready: Callable[[Worker], bool] | None = None,
    env: dict[str, str] | None = None,
) -> Worker:
    """The Procfile's own command line for `entry`, run as honcho runs it (bash, from the
    repository root). Tests vary only the environment, never the flags."""
    command = procfile_commands()[entry]
    return Worker(name or entry, ["bash", "-c", command], ready_text, log_dir, ready, cwd=REPO_DIR, env=env)


def web_server(log_dir: Path, *, name: str = "web", env: dict[str, str] | None = None) -> tuple[Worker, str]:
    """The Procfile's `web` line on a free port; (the not yet started process, its base URL)."""
    from devtools.devstack import free_port

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    worker = procfile_worker(
        "web",
        log_dir,
        name=name,
        ready_text="Application startup complete",
        ready=lambda _: answers_liveness(base_url),
        env={"API_HOST": "127.0.0.1", "API_PORT": str(port), **(env or {})},
    )
    return worker, base_url


def answers_liveness(base_url: str) -> bool:
    """Whether the server answers /health. Uvicorn prints "Application startup complete"
    before it binds its socket, so that line alone let a test connect too early (refused)."""
    import httpx

    try:
        return httpx.get(f"{base_url}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def celery_worker(log_dir: Path, name: str = "celery", *, env: dict[str, str] | None = None) -> Worker:
    """The Procfile's `celery` line; the node name comes from the environment (Celery's CLI
    reads CELERY_WORKER_HOSTNAME), so two test workers on one machine stay apart."""
    return procfile_worker(
        "celery", log_dir, name=name, ready_text="ready.", env={"CELERY_WORKER_HOSTNAME": f"{name}@%h", **(env or {})}
    )


def rq_pool_size() -> int:
    return int(os.environ.get("RQ_WORKERS", "2"))


def in_rq_main_loop(worker: Worker, expected: int = 1) -> bool:
    """Whether the RQ worker process (or `expected` workers of a pool) is past start-up. A
    worker prints `*** Listening on` before it takes the scheduler lock and installs its
    signal handlers, and exits if Redis fails in between; only its main loop marks it idle
    (or busy) in Redis."""
    from rq.worker import Worker as RQWorker

    from backend_app.core.rq_app import get_redis

    assert worker.process is not None
    own = {worker.process.pid, *worker.children()}
    ready = [
        found for found in RQWorker.all(connection=get_redis()) if found.pid in own and found.get_state() != "started"
    ]
    return len(ready) >= expected


def rq_worker_of_class(log_dir: Path, worker_class: str, *queues: str, name: str | None = None) -> Worker:
    """`rq worker QUEUES --worker-class backend_app.core.rq_worker.<worker_class>`: for the
    tests of the worker classes themselves; everything else runs the Procfile's lines."""
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


def rq_worker(log_dir: Path, name: str = "rq", *, env: dict[str, str] | None = None) -> Worker:
    """The Procfile's `rq` line: a pool of batch workers for notifications and analytics."""
    return procfile_worker(
        "rq",
        log_dir,
        name=name,
        ready_text="Listening on",
        ready=lambda w: in_rq_main_loop(w, rq_pool_size()),
        env=env,
    )


def rq_video_worker(log_dir: Path, name: str = "rq-video") -> Worker:
    """The Procfile's `rq-video` line: a forking worker for video_processing."""
    return procfile_worker("rq-video", log_dir, name=name, ready_text="Listening on", ready=in_rq_main_loop)


def relay(log_dir: Path, name: str = "relay", *, env: dict[str, str] | None = None) -> Worker:
    """The Procfile's `relay` line."""
    return procfile_worker("relay", log_dir, name=name, ready_text="outbox relay started", env=env)
