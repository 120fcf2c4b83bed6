"""Flower, started with its documented command, behind basic auth, seen in headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backend_app.core.celery_app import celery_app
from devtools.devstack import LocalStack, free_port
from tests.processes import API_DIR, BIN_DIR, Worker, wait_until

LOGIN = ("operator", "flower-s3cret")


@pytest.fixture
def flower(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("FLOWER_BASIC_AUTH", ":".join(LOGIN))
    port = free_port()
    process = Worker(
        "flower",
        [
            str(BIN_DIR / "celery"),
            "-A",
            "backend_app.core.celery_app",
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
        ],
        "Visit me at",
        tmp_path,
    ).start()
    yield f"http://127.0.0.1:{port}"
    process.stop()


def chromium_dom(url: str, profile: Path) -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "Chromium is needed: `make test` installs it (apt-get install chromium)"
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


async def test_flower_asks_for_a_login(flower: str) -> None:
    async with httpx.AsyncClient() as client:
        anonymous = await client.get(f"{flower}/workers")
        wrong = await client.get(f"{flower}/workers", auth=("operator", "guess"))
        signed_in = await client.get(f"{flower}/workers", auth=LOGIN)

    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert signed_in.status_code == 200


async def test_browser_sees_the_worker_and_a_task_that_just_ran(
    flower: str, celery_process: Worker, stack: LocalStack, tmp_path: Path
) -> None:
    celery_app.send_task("backend_app.core.celery_tasks.ping", task_id="flower-visible-task", queue="emails")
    assert stack.primary is not None
    await wait_until(
        lambda: stack.primary.psql("SELECT status FROM task_records WHERE id = 'flower-visible-task'") == "succeeded",
        what="the task to run",
    )
    base = flower.replace("http://", f"http://{LOGIN[0]}:{LOGIN[1]}@")

    task_page = chromium_dom(f"{base}/task/flower-visible-task", tmp_path / "profile-task")
    workers_page = chromium_dom(f"{base}/workers", tmp_path / "profile-workers")

    assert "backend_app.core.celery_tasks.ping" in task_page
    assert "SUCCESS" in task_page
    assert "celery@" in workers_page


def test_production_refuses_flower_without_a_login() -> None:
    env = {**os.environ, "ENVIRONMENT": "production", "SECRET_KEY": "a-long-private-value", "FLOWER_BASIC_AUTH": ""}
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "backend_app.core.celery_app", "flower", "--port=1"],
        cwd=API_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "FLOWER_BASIC_AUTH: required (user:password) when ENVIRONMENT=production" in result.stderr
    assert "Traceback" not in result.stderr
