"""Video upload and processing with real FFmpeg (PyAV), a real relay and RQ worker."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import av
import httpx
import pytest

from backend_app.core.config import get_settings
from devtools.devstack import LocalStack
from tests.accounts import sign_up
from tests.processes import relay, rq_video_worker
from tests.videos.clips import make_clip

MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", "media"))


@pytest.fixture
def video_workers(tmp_path: Path) -> Iterator[None]:
    workers = [
        relay(tmp_path),
        rq_video_worker(tmp_path),
    ]
    try:
        for worker in workers:
            worker.start()
        yield
    finally:
        for worker in workers:
            worker.stop()


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "holiday.mp4", width=854, height=480, seconds=2)


def uploads() -> set[Path]:
    return set((MEDIA_ROOT / "uploads").glob("*"))


async def wait_for_status(client: httpx.AsyncClient, video_id: int, headers: dict, wanted: str) -> dict:
    deadline = time.monotonic() + 90
    while True:
        body = (await client.get(f"/api/videos/{video_id}", headers=headers)).json()
        if body.get("status") == wanted:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"video {video_id} never became {wanted}: {body}")
        await asyncio.sleep(0.2)


async def test_upload_transcodes_without_upscaling_and_makes_a_thumbnail(
    client: httpx.AsyncClient, stack: LocalStack, clip: Path, video_workers: None
) -> None:
    _, ada = await sign_up(client, "ada")

    with clip.open("rb") as file:
        response = await client.post(
            "/api/videos/upload", files={"file": ("../../etc/holiday.mp4", file, "video/mp4")}, headers=ada
        )

    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "uploaded"
    video = await wait_for_status(client, accepted["video_id"], ada, "ready")
    assert video["progress"] == 100
    assert video["original_filename"] == "holiday.mp4"
    assert (video["width"], video["height"]) == (854, 480)
    assert [r["quality"] for r in video["renditions"]] == ["480p"], "720p would be an upscale"
    rendition = video["renditions"][0]
    assert rendition["url"] == f"http://localhost:8000/media/{rendition['path']}"
    path = MEDIA_ROOT / rendition["path"]
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "aac"
        assert (container.streams.video[0].width, container.streams.video[0].height) == (854, 480)
    head = path.read_bytes()[:4096]
    assert b"moov" in head, "faststart puts the index before the media data"
    assert video["thumbnail_url"].endswith("/thumbnail.jpg")
    media_folder = path.parent
    assert media_folder.name != str(video["id"]), "media folders are not guessable from the id"
    assert (media_folder / "thumbnail.jpg").read_bytes()[:2] == b"\xff\xd8"
    served = await client.get(f"/media/{rendition['path']}")
    assert served.status_code == 200
    assert served.content == path.read_bytes()
    assert stack.primary is not None
    assert stack.primary.psql(f"SELECT status FROM task_records WHERE id = '{accepted['task_id']}'") == "succeeded"


async def test_a_phone_clip_stored_sideways_comes_out_upright_and_tall(
    client: httpx.AsyncClient, tmp_path: Path, video_workers: None
) -> None:
    _, ada = await sign_up(client, "ada")
    # Stored 854x480 with "turn 90 degrees counter-clockwise to show": a portrait 480x854 clip.
    sideways = make_clip(tmp_path / "portrait.mp4", width=854, height=480, rotation=90, bright_top=True)

    with sideways.open("rb") as file:
        response = await client.post("/api/videos/upload", files={"file": ("portrait.mp4", file)}, headers=ada)
    assert response.status_code == 202, response.text
    video = await wait_for_status(client, response.json()["video_id"], ada, "ready")

    assert (video["width"], video["height"]) == (480, 854)
    # "480p" is the shorter side: the portrait clip is already 480 wide, so that is all it gets.
    assert [(r["quality"], r["width"], r["height"]) for r in video["renditions"]] == [("480p", 480, 854)]
    path = MEDIA_ROOT / video["renditions"][0]["path"]
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height, frame.rotation) == (480, 854, 0), "turned in the pixels, no matrix left"
    # The stored top (white) is on the left once turned counter-clockwise.
    first_row = bytes(frame.planes[0])[: frame.width]
    assert min(first_row[:200]) > 200
    assert max(first_row[-200:]) < 50
    with av.open(str(path.parent / "thumbnail.jpg")) as thumbnail:
        picture = next(thumbnail.decode(video=0))
    assert (picture.width, picture.height) == (480, 854)


async def test_broken_input_ends_failed_with_the_reason(
    client: httpx.AsyncClient, stack: LocalStack, clip: Path, tmp_path: Path
) -> None:
    _, ada = await sign_up(client, "ada")
    with clip.open("rb") as file:
        accepted = (await client.post("/api/videos/upload", files={"file": ("a.mp4", file)}, headers=ada)).json()
    assert stack.primary is not None
    stored = MEDIA_ROOT / stack.primary.psql(f"SELECT stored_path FROM videos WHERE id = {accepted['video_id']}")
    stored.write_bytes(b"this is no longer a video")  # broken after the upload was accepted

    workers = [
        relay(tmp_path),
        rq_video_worker(tmp_path),
    ]
    try:
        for worker in workers:
            worker.start()
        video = await wait_for_status(client, accepted["video_id"], ada, "failed")
    finally:
        for worker in workers:
            worker.stop()

    assert video["error"].startswith("not a readable video")
    assert str(MEDIA_ROOT) not in video["error"], "no server paths in errors"
    assert stack.primary.psql(f"SELECT status FROM task_records WHERE id = '{accepted['task_id']}'") == "failed"


async def test_not_a_video_is_415_and_nothing_is_kept(client: httpx.AsyncClient, tmp_path: Path) -> None:
    _, ada = await sign_up(client, "ada")
    before = uploads()

    response = await client.post(
        "/api/videos/upload", files={"file": ("notes.mp4", b"plain text pretending", "video/mp4")}, headers=ada
    )

    assert response.status_code == 415
    assert response.json()["detail"].startswith("Not a video")
    assert uploads() == before


async def test_empty_and_missing_files_are_422(client: httpx.AsyncClient) -> None:
    _, ada = await sign_up(client, "ada")
    before = uploads()

    empty = await client.post("/api/videos/upload", files={"file": ("empty.mp4", b"")}, headers=ada)
    missing = await client.post("/api/videos/upload", files={"other": ("x.txt", b"abc")}, headers=ada)
    bad_quality = await client.post(
        "/api/videos/upload", files={"file": ("a.mp4", b"abc")}, data={"quality": "4k"}, headers=ada
    )

    assert empty.status_code == 422
    assert empty.json() == {
        "detail": "The request is invalid.",
        "code": "validation_failed",
        "errors": [{"type": "value_error", "loc": ["body", "file"], "msg": "The uploaded file is empty."}],
    }
    assert missing.status_code == 422
    assert bad_quality.status_code == 422
    assert uploads() == before


async def test_too_big_is_413_while_streaming_and_nothing_is_kept(
    client: httpx.AsyncClient, clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, ada = await sign_up(client, "ada")
    before = uploads()
    monkeypatch.setenv("VIDEO_MAX_UPLOAD_BYTES", "4096")
    get_settings.cache_clear()
    try:
        with clip.open("rb") as file:
            response = await client.post("/api/videos/upload", files={"file": ("big.mp4", file)}, headers=ada)
    finally:
        monkeypatch.delenv("VIDEO_MAX_UPLOAD_BYTES")
        get_settings.cache_clear()

    assert response.status_code == 413
    assert "4096 byte limit" in response.json()["detail"]
    assert uploads() == before


async def test_someone_elses_video_is_404(client: httpx.AsyncClient, clip: Path, stack: LocalStack) -> None:
    _, ada = await sign_up(client, "ada")
    _, bob = await sign_up(client, "bob")
    with clip.open("rb") as file:
        accepted = (await client.post("/api/videos/upload", files={"file": ("a.mp4", file)}, headers=ada)).json()
    stack.wait_for_replicas()

    assert (await client.get(f"/api/videos/{accepted['video_id']}", headers=bob)).status_code == 404
    assert (await client.get(f"/api/videos/{accepted['video_id']}", headers=ada)).status_code == 200


# A 1x1 GIF: FFmpeg reads it as a one-frame "video" stream.
ONE_PIXEL_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


async def test_a_picture_is_not_a_video(client: httpx.AsyncClient) -> None:
    _, ada = await sign_up(client, "ada")
    before = uploads()

    response = await client.post(
        "/api/videos/upload", files={"file": ("pixel.mp4", ONE_PIXEL_GIF, "video/mp4")}, headers=ada
    )

    assert response.status_code == 415
    assert response.json() == {"detail": "Not a video: a picture (gif), not a video", "code": "unsupported_media_type"}
    assert uploads() == before


async def test_an_upload_that_stops_sending_is_cut_off_with_408_and_nothing_is_kept(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    _, ada = await sign_up(client, "ada")
    before = uploads()
    monkeypatch.setenv("VIDEO_UPLOAD_IDLE_TIMEOUT_SECONDS", "0.5")
    get_settings.cache_clear()
    request.addfinalizer(get_settings.cache_clear)
    never = asyncio.Event()

    async def stalling_body() -> AsyncIterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n' + b"\0" * 100
        await never.wait()

    started = time.monotonic()
    response = await client.post(
        "/api/videos/upload",
        content=stalling_body(),
        headers={**ada, "Content-Type": "multipart/form-data; boundary=b", "Content-Length": "100000"},
    )

    assert response.status_code == 408
    assert response.json() == {
        "detail": "Nothing arrived for 0.5 seconds; send the upload again.",
        "code": "request_timeout",
    }
    assert response.headers["Connection"] == "close"
    assert time.monotonic() - started < 5
    assert uploads() == before


async def test_uploads_go_on_without_redis(client: httpx.AsyncClient, stack: LocalStack, clip: Path) -> None:
    """The per-user limit fails open: a Redis outage is no upload outage."""
    _, ada = await sign_up(client, "ada")
    assert stack.redis is not None
    stack.redis.stop()

    with clip.open("rb") as file:
        response = await client.post("/api/videos/upload", files={"file": ("a.mp4", file)}, headers=ada)

    assert response.status_code == 202, response.text


async def test_an_account_deleted_since_its_token_was_issued_cannot_upload(
    client: httpx.AsyncClient, stack: LocalStack, clip: Path
) -> None:
    ada_id, ada = await sign_up(client, "ada")
    assert stack.primary is not None
    stack.primary.psql(f"DELETE FROM users WHERE id = {ada_id}")
    before = uploads()

    with clip.open("rb") as file:
        response = await client.post("/api/videos/upload", files={"file": ("a.mp4", file)}, headers=ada)

    assert response.status_code == 401
    assert uploads() == before
    assert stack.primary.psql("SELECT count(*) FROM videos") == "0"


async def test_the_upload_answer_carries_its_write_position(
    client: httpx.AsyncClient, stack: LocalStack, clip: Path
) -> None:
    """The session opens after the body is in, and still hands back read-your-writes."""
    _, ada = await sign_up(client, "ada")

    with clip.open("rb") as file:
        response = await client.post("/api/videos/upload", files={"file": ("a.mp4", file)}, headers=ada)

    assert response.status_code == 202
    position = response.headers["X-DB-Position"]
    assert response.cookies.get("db_position") == position
    # Read straight after, with the position: the replica waits for (or yields to) the write.
    video = await client.get(f"/api/videos/{response.json()['video_id']}", headers={**ada, "X-DB-Position": position})
    assert video.status_code == 200
