"""Shared fixtures: the real stack, started once per test session.

A PostgreSQL primary with two streaming replicas (initdb + pg_basebackup -R) and a Redis run
from the installed server binaries on free ports in a temporary folder, and are stopped and
removed at the end. Nothing here touches a database or Redis already running on the machine.
Each test starts from empty tables and an empty Redis.

The stack starts in `pytest_sessionstart`, before test modules are imported, because
module-level objects (the Celery app, the Redis client) read the settings when imported.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from backend_app.core.config import Settings, get_settings
from devtools.devstack import LocalStack, free_port, run_migrations
from tests.processes import Worker, celery_worker, relay, rq_video_worker, rq_worker

if TYPE_CHECKING:
    from fastapi import FastAPI

    from devtools.devstack import PostgresServer

# Short timings so the fault tests finish in seconds; the defaults are for production.
TEST_SETTINGS = {
    "CELERY_VISIBILITY_TIMEOUT": "6",
    "TASK_RETRY_BACKOFF_MAX": "2",
    "CELERY_IMPORTS": "tests.worker_tasks",
    "OUTBOX_POLL_INTERVAL": "0.5",
    "OUTBOX_MAX_BACKOFF": "1",
    "CANARY_TIMEOUT_SECONDS": "5",
    "DB_HEALTH_CHECK_INTERVAL": "0.2",
    "DB_REPLICA_BAN_SECONDS": "1",
    "DB_REPLICA_MAX_LAG_SECONDS": "2",
    "TASK_RECONCILE_INTERVAL": "0.5",
    "TASK_RECONCILE_GRACE": "3",
    "PROBE_TOKEN": "test-probe-token",
}
# What a monitoring probe sends to see the details of /health/queues and /health/database.
PROBE = {"Authorization": "Bearer test-probe-token"}

_stack: LocalStack | None = None
_saved_environment: dict[str, str] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    global _stack
    if hasattr(session.config, "workerinput"):
        return
    root = Path(tempfile.mkdtemp(prefix="jobplatform-tests-"))
    # When the suite runs as root, PostgreSQL runs as an unprivileged account that must
    # be able to walk through this folder to reach its own.
    root.chmod(0o711)
    _stack = LocalStack(root, replicas=2, durable=False)
    _saved_environment.update(os.environ)
    try:
        _stack.start()
    except Exception:
        _stack.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise
    os.environ.update(_stack.environment())
    os.environ.update(TEST_SETTINGS)
    os.environ["MEDIA_ROOT"] = str(_stack.root / "media")
    get_settings.cache_clear()
    run_migrations(dict(os.environ))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _stack is None:
        return
    os.environ.clear()
    os.environ.update(_saved_environment)
    get_settings.cache_clear()
    _stack.stop()
    shutil.rmtree(_stack.root, ignore_errors=True)


@pytest.fixture(scope="session")
def stack() -> LocalStack:
    assert _stack is not None, "the test stack did not start"
    return _stack


@pytest.fixture(autouse=True)
def isolated_state(stack: LocalStack) -> Iterator[None]:
    """Every test starts with all servers up, empty tables and an empty Redis."""
    from backend_app.models import Base

    yield
    assert stack.primary is not None
    assert stack.redis is not None
    stack.primary.start()
    for replica in stack.replicas:
        replica.start()
        # A test may have paused replay (lag tests); a paused replica would stay behind.
        replica.psql("SELECT pg_wal_replay_resume()")
    stack.redis.start()
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    stack.primary.psql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    stack.redis.flushall()


@pytest.fixture
def settings(stack: LocalStack) -> Settings:
    # _env_file=None: a developer's api/.env must not leak into the tests.
    return Settings(_env_file=None)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    from backend_app.main import create_app

    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http_client:
        yield http_client


@pytest.fixture
def test_task_tables(stack: LocalStack) -> Iterator[None]:
    """The tables the test tasks in tests/worker_tasks.py write to."""
    from tests.worker_tasks import CREATE_TABLES

    assert stack.primary is not None
    stack.primary.psql(CREATE_TABLES)
    yield
    stack.primary.psql("TRUNCATE test_task_runs, test_task_effects")


@pytest.fixture
def worker_code_in_this_process() -> Iterator[None]:
    """Worker-side functions make their own loop and engines; close them after the test."""
    from backend_app.core import worker_runtime

    yield
    worker_runtime.shutdown()


@pytest.fixture
def relay_process(tmp_path: Path, test_task_tables: None) -> Iterator[Worker]:
    worker = relay(tmp_path).start()
    yield worker
    worker.stop()


@pytest.fixture
def celery_process(tmp_path: Path, test_task_tables: None) -> Iterator[Worker]:
    worker = celery_worker(tmp_path).start()
    yield worker
    worker.stop()


@pytest.fixture
def rq_process(tmp_path: Path, test_task_tables: None) -> Iterator[Worker]:
    """The Procfile's RQ processes: the pool (notifications, analytics) and the video worker.
    Yields the pool."""
    workers = [rq_video_worker(tmp_path), rq_worker(tmp_path)]
    try:
        for worker in workers:
            worker.start()
        yield workers[1]
    finally:
        for worker in workers:
            worker.stop()


@pytest.fixture
def make_user(stack: LocalStack) -> Callable[..., tuple[int, str]]:
    """Insert a user on the primary, its address confirmed unless `verified=False`; returns
    (user id, bearer token)."""
    from backend_app.core.security import create_access_token

    def create(username: str = "owner", *, is_admin: bool = False, verified: bool = True) -> tuple[int, str]:
        assert stack.primary is not None
        verified_at = "now()" if verified else "NULL"
        user_id = int(
            stack.primary.psql(
                "INSERT INTO users"
                " (email, username, first_name, last_name, password_hash, role, is_admin, email_verified_at)"
                f" VALUES ('{username}@example.com', '{username}', 'Test', 'User', 'x', 'job_seeker', {is_admin},"
                f" {verified_at}) RETURNING id"
            ).splitlines()[0]
        )
        stack.wait_for_replicas()
        return user_id, create_access_token(user_id)

    return create


@dataclass
class SmtpSink:
    """A real SMTP server (aiosmtpd) in the test process; `reply` makes it refuse mail."""

    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    reply: str | None = None
    _controller: Any = None

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        if self.reply is not None:
            return self.reply
        self.messages.append(message_from_bytes(envelope.content, _class=EmailMessage, policy=default_policy))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in m["To"]]

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        # A stopped Controller cannot start again; a new one takes the same port.
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp_sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpSink]:
    """SMTP on a free port; workers started after this fixture send their mail to it."""
    sink = SmtpSink(port=free_port())
    sink.start()
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(sink.port))
    monkeypatch.setenv("SMTP_USE_TLS", "false")
    get_settings.cache_clear()
    yield sink
    sink.stop()
    get_settings.cache_clear()


@pytest.fixture
def mail_workers(smtp_sink: SmtpSink, tmp_path: Path, test_task_tables: None) -> Iterator[SmtpSink]:
    """The relay and a Celery worker that deliver to `smtp_sink`."""
    workers = [relay(tmp_path), celery_worker(tmp_path)]
    try:
        for worker in workers:
            worker.start()
        yield smtp_sink
    finally:
        for worker in workers:
            worker.stop()


async def wait_for_mail(sink: SmtpSink, address: str, count: int = 1, seconds: float = 30) -> list[EmailMessage]:
    import asyncio
    import time

    deadline = time.monotonic() + seconds
    while len(sink.to(address)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} email(s) to {address} did not arrive within {seconds}s")
        await asyncio.sleep(0.1)
    return sink.to(address)


@pytest.fixture
async def probe_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with tests/probe_routes.py mounted: records test tasks like a write endpoint."""
    from tests.probe_routes import probe

    app.include_router(probe)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        yield client


def query(stack: LocalStack, sql: str) -> str:
    """Run SQL on the primary with psql; returns its unaligned output."""
    assert stack.primary is not None
    return stack.primary.psql(sql)


def terminate_connections(node: PostgresServer, application_name: str) -> int:
    """Drop, on the server's side, every connection `application_name` holds to `node` (what
    a restart does to pooled connections); returns how many there were."""
    return int(
        node.psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            f" WHERE application_name = '{application_name}' AND pid <> pg_backend_pid()"
        )
    )
