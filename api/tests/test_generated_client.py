"""A frontend's generated client, end to end. openapi-typescript turns the live OpenAPI
document of the Procfile's web process into types, tsc checks tests/typescript_client/
journey.ts against them (a renamed route, field or status breaks the build, and so
`make test`), and node drives the whole journey through openapi-fetch: register, verify by
the emailed link, sign in, refresh, post a job, apply, withdraw, follow, message, upload a
video and poll it until processed, sign out."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx

from devtools.devstack import LocalStack
from tests.conftest import SmtpSink
from tests.processes import rq_video_worker, web_server
from tests.videos.clips import make_clip

CLIENT_DIR = Path(__file__).parent / "typescript_client"
NODE_MODULES = CLIENT_DIR / "node_modules"
VERIFY_LINK = re.compile(r"/verify-email\?token=([\w-]+)")


def build_client(base_url: str, work: Path) -> Path:
    """The journey compiled against the client generated from the running API's document."""
    for name in ("journey.ts", "tsconfig.json", "package.json"):
        shutil.copy(CLIENT_DIR / name, work / name)
    (work / "node_modules").symlink_to(NODE_MODULES)
    (work / "openapi.json").write_text(httpx.get(f"{base_url}/openapi.json", timeout=10).text)
    for command in (
        [str(NODE_MODULES / ".bin" / "openapi-typescript"), "openapi.json", "-o", "schema.d.ts"],
        [str(NODE_MODULES / ".bin" / "tsc"), "-p", "tsconfig.json"],
    ):
        built = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=120)
        assert built.returncode == 0, f"{' '.join(command[:1])} failed:\n{built.stdout}\n{built.stderr}"
    return work / "out" / "journey.js"


def hand_over_verification_links(sink: SmtpSink, mail_dir: Path) -> None:
    """What a user does with the email: follow its link (here, hand its token to the journey)."""
    for message in list(sink.messages):
        found = VERIFY_LINK.search(message.get_body(("plain",)).get_content())
        if found:
            address = re.sub(r".*<|>.*", "", message["To"])
            (mail_dir / f"{address}.token").write_text(found.group(1))


def test_a_generated_typescript_client_drives_a_whole_user_journey(
    stack: LocalStack, mail_workers: SmtpSink, tmp_path: Path
) -> None:
    server, base_url = web_server(tmp_path)
    video_worker = rq_video_worker(tmp_path)
    server.start()
    video_worker.start()
    try:
        journey = build_client(base_url, tmp_path)
        mail_dir = tmp_path / "mail"
        mail_dir.mkdir()
        clip = make_clip(tmp_path / "intro.mp4", width=640, height=360, seconds=1)
        env = {**os.environ, "API_URL": base_url, "MAIL_DIR": str(mail_dir), "CLIP": str(clip)}
        process = subprocess.Popen(
            ["node", str(journey)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 240
        while process.poll() is None:
            hand_over_verification_links(mail_workers, mail_dir)
            if time.monotonic() > deadline:
                process.kill()
                break
            time.sleep(0.2)
        stdout, stderr = process.communicate(timeout=10)
        assert process.returncode == 0, f"the journey failed:\n{stdout}\n{stderr}\n{server.output()[-3000:]}"
        summary = json.loads(stdout.strip().splitlines()[-1])
        assert summary["ok"] is True
        assert {"job", "application", "video"} <= summary.keys()
    finally:
        video_worker.stop()
        server.stop()
