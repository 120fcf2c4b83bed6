"""Procfile.dev: the operators' tools `make dev` runs beside the Procfile's processes."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from backend_app.worker import rq_app
from devtools.devstack import LocalStack, free_port
from tests.processes import REPO_DIR, Worker, procfile_commands

MAKEFILE = REPO_DIR / "Makefile"


def test_make_dev_runs_the_procfile_and_procfile_dev_together() -> None:
    dev_target = re.search(r"^dev:.*?(?=^\S)", MAKEFILE.read_text(), re.MULTILINE | re.DOTALL)
    assert dev_target is not None
    recipe = dev_target.group(0)
    assert "cat Procfile Procfile.dev >" in recipe
    assert "honcho -f $(VENV)/Procfile.make-dev -d . start" in recipe
    # No name in both: honcho would run only one of them.
    assert not procfile_commands().keys() & procfile_commands(REPO_DIR / "Procfile.dev").keys()


def test_rq_dashboard_shows_the_rq_queues_behind_its_login(stack: LocalStack, tmp_path: Path) -> None:
    for queue in ("notifications", "analytics", "video_processing"):
        rq_app.get_queue(queue).enqueue_call("backend_app.core.rq_tasks.ping_job")  # a queue RQ knows of
    port = free_port()
    dashboard = Worker(
        "rq-dashboard",
        ["bash", "-c", procfile_commands(REPO_DIR / "Procfile.dev")["rq-dashboard"]],
        "Running on",
        tmp_path,
        cwd=REPO_DIR,
        env={"RQ_DASHBOARD_PORT": str(port), "RQ_DASHBOARD_USERNAME": "ops", "RQ_DASHBOARD_PASSWORD": "s3cret-ops"},
    ).start()
    try:
        queues_url = f"http://127.0.0.1:{port}/0/data/queues.json"
        assert httpx.get(queues_url, timeout=10).status_code == 401
        answer = httpx.get(queues_url, auth=("ops", "s3cret-ops"), timeout=10)
        assert answer.status_code == 200, answer.text
        shown = {queue["name"]: queue["count"] for queue in answer.json()["queues"]}
        assert {"notifications", "analytics", "video_processing"} <= shown.keys()
        assert shown["video_processing"] >= 1
    finally:
        dashboard.stop()
        for queue in ("notifications", "analytics", "video_processing"):
            rq_app.get_queue(queue).empty()
