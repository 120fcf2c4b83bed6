"""The video jobs as the video worker runs them: one coroutine per job (`run_async` once),
FFmpeg in a thread, and what a job stopped by its timeout leaves behind."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from rq import Callback

from backend_app.videos import tasks as video_tasks
from backend_app.worker import rq_app
from devtools.devstack import LocalStack
from tests.accounts import sign_up
from tests.processes import rq_video_worker
from tests.run_async_calls import count_run_async
from tests.videos.clips import make_clip
from tests.videos.test_router import MEDIA_ROOT, wait_for_status


def add_video(stack: LocalStack, owner_id: int, clip: Path, media_key: str = "k1") -> tuple[int, str]:
    """A video row for a clip stored under MEDIA_ROOT/uploads, as an accepted upload leaves it."""
    uploads = Path(os.environ["MEDIA_ROOT"]) / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    stored = uploads / f"{media_key}.upload"
    stored.write_bytes(clip.read_bytes())
    assert stack.primary is not None
    video_id = stack.primary.psql(
        "INSERT INTO videos (owner_id, original_filename, stored_path, media_key, size_bytes, status)"
        f" VALUES ({owner_id}, 'clip.mp4', 'uploads/{stored.name}', '{media_key}', {stored.stat().st_size},"
        " 'uploaded') RETURNING id"
    ).splitlines()[0]
    return int(video_id), f"uploads/{stored.name}"


def test_each_job_is_one_trip_into_the_loop_with_progress_written_on_the_way(
    stack: LocalStack,
    make_user: Callable[..., tuple[int, str]],
    tmp_path: Path,
    worker_code_in_this_process: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner_id, _ = make_user("ada")
    video_id, stored_path = add_video(stack, owner_id, make_clip(tmp_path / "clip.mp4", seconds=2))
    written: list[int] = []

    async def update(video_id: int, **values: Any) -> None:
        if "progress" in values:
            written.append(values["progress"])
        await real_update(video_id, **values)

    from backend_app.videos import service

    real_update = service._update
    trips = count_run_async(monkeypatch, video_tasks)
    monkeypatch.setattr(service, "_update", update)

    result = video_tasks.process_video_job(
        video_id=video_id, video_path=stored_path, user_id=owner_id, processing_options={"quality": ["480p", "360p"]}
    )
    thumbnail = video_tasks.generate_video_thumbnail_job(video_id=video_id, video_path=stored_path)

    assert result == {"video_id": video_id, "renditions": ["480p", "360p"]}
    assert thumbnail["thumbnail"].endswith("/videos/k1/thumbnail.jpg")
    assert [trip.__qualname__ for trip in trips] == ["process", "make_thumbnail"]
    assert written[0] == 0
    assert written[-1] == 100
    assert written == sorted(written), "progress only moves forward"
    middle = written[1:-1]
    assert len(middle) >= 5, "transcoding reports its progress while it runs"
    assert all(b - a >= 5 for a, b in itertools.pairwise(middle)), "throttled to steps of 5%"
    assert stack.primary is not None
    assert stack.primary.psql(f"SELECT status, progress FROM videos WHERE id = {video_id}") == "ready|100"


async def test_a_job_stopped_by_its_timeout_ends_failed_and_leaves_no_files(
    client: httpx.AsyncClient, stack: LocalStack, tmp_path: Path
) -> None:
    _, ada = await sign_up(client, "ada")
    # About 2.5 s of transcoding per rendition: well past a 1 s timeout.
    clip = make_clip(tmp_path / "long.mp4", width=1280, height=720, seconds=10, fps=24, bright_top=True)
    with clip.open("rb") as file:
        accepted = (await client.post("/api/videos/upload", files={"file": ("long.mp4", file)}, headers=ada)).json()
    assert stack.primary is not None
    media_key = stack.primary.psql(f"SELECT media_key FROM videos WHERE id = {accepted['video_id']}")
    stored_path = stack.primary.psql(f"SELECT stored_path FROM videos WHERE id = {accepted['video_id']}")
    # No relay: the job is queued by hand with a timeout it cannot meet.
    rq_app.get_queue(rq_app.VIDEO_QUEUE).enqueue_call(
        video_tasks.process_video_job.name,
        kwargs={
            "video_id": accepted["video_id"],
            "video_path": stored_path,
            "user_id": 1,
            "processing_options": {"quality": ["720p", "480p"]},
        },
        job_id=accepted["task_id"],
        timeout=1,
        on_failure=Callback(rq_app.FAILURE_CALLBACK),
    )
    worker = rq_video_worker(tmp_path).start()
    try:
        video = await wait_for_status(client, accepted["video_id"], ada, "failed")
        await asyncio.sleep(2)  # anything of the stopped attempt still going would show now
    finally:
        worker.stop()

    assert video["error"] == "processing stopped: JobTimeoutException"
    assert not (MEDIA_ROOT / "videos" / media_key).exists(), "no half-written renditions stay behind"
    assert stack.primary.psql(f"SELECT status FROM task_records WHERE id = '{accepted['task_id']}'") == "failed"
    assert stack.primary.psql(f"SELECT status FROM videos WHERE id = {accepted['video_id']}") == "failed"
