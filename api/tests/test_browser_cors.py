"""A browser app on another origin, in a real headless Chromium against the Procfile's web
process: CORS lets it call the API, read its errors and its write's `X-DB-Position`, and that
position sent back gives it its own write while both replicas are behind (read-your-writes
across origins). The page is served by a second local server: http://localhost:<port> is
another origin, and another site, than the API's http://127.0.0.1:<port>, as a deployed
frontend would be, so the position cookie (SameSite=Lax) is not sent and the header is the
contract. And the documentation pages: they render in the browser under their own
Content-Security-Policy, loading nothing from anywhere but the API itself."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from devtools.devstack import LocalStack
from tests.processes import web_server

CHROMIUM = Path("/usr/bin/chromium")
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Another origin</title></head>
<body><pre id="results">{}</pre>
<script>
const API = new URLSearchParams(location.search).get("api");
window.results = {};

function report(name, value) {
  window.results[name] = value;
  document.getElementById("results").textContent = JSON.stringify(window.results, null, 1);
  return value;
}

// What a browser app sees of one call: status, JSON body and the exposed headers, or the
// error fetch raises when CORS keeps the answer from the page.
async function call(method, path, {token, body, position, credentials = "include"} = {}) {
  const headers = {};
  if (token) headers["Authorization"] = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (position) headers["X-DB-Position"] = position;
  try {
    const response = await fetch(API + path, {
      method, headers, credentials, body: typeof body === "string" ? body : JSON.stringify(body),
    });
    let json = null;
    try { json = await response.json(); } catch (error) { json = null; }
    return {
      status: response.status,
      body: json,
      position: response.headers.get("X-DB-Position"),
      retryAfter: response.headers.get("Retry-After"),
    };
  } catch (error) {
    return {error: String(error)};
  }
}

async function signUp(username) {
  const email = username + "@example.com", password = "long-enough-pass-7";
  const registered = await call("POST", "/api/auth/register", {body: {
    email, username, password, first_name: "Page", last_name: "Tester", role: "employer",
  }});
  const login = await call("POST", "/api/auth/login", {body: {email, password}});
  return report("signUp", {registered: registered.status, login: login.status,
                           token: login.body && login.body.access_token});
}

async function postAndReadBack(token) {
  const created = report("created", await call("POST", "/api/jobs", {token, body: {
    title: "Frontend engineer", description: "Builds the browser app.", location: "Remote",
  }}));
  const path = "/api/jobs/" + (created.body && created.body.id);
  // Straight after the write, with the position it answered: the replicas are paused.
  report("withPosition", await call("GET", path, {position: created.position}));
  report("withoutPosition", await call("GET", path));
  report("notSignedIn", await call("POST", "/api/jobs", {body: {title: "x"}}));
  report("invalid", await call("GET", "/api/jobs/not-a-number"));
  return window.results;
}

async function tooLarge(bytes) {
  return report("tooLarge", await call("POST", "/api/analytics/events", {body: " ".repeat(bytes)}));
}
</script></body></html>
"""


class _PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def page_server() -> Iterator[int]:
    """The page's own server on a free port of 127.0.0.1; yields the port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def replay_paused(stack: LocalStack) -> Iterator[None]:
    for replica in stack.replicas:
        replica.psql("SELECT pg_wal_replay_pause()")
    try:
        yield
    finally:
        for replica in stack.replicas:
            replica.psql("SELECT pg_wal_replay_resume()")


def mark_verified(stack: LocalStack, username: str) -> None:
    """Email verification is outside this test: the account is verified the way the link would."""
    assert stack.primary is not None
    has_column = stack.primary.psql(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users'"
        " AND column_name = 'email_verified_at'"
    )
    if has_column.strip() == "1":
        stack.primary.psql(f"UPDATE users SET email_verified_at = now() WHERE username = '{username}'")
    stack.wait_for_replicas()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is installed by scripts/system-deps.sh")
def test_a_page_on_another_origin_reads_its_own_write_while_the_replicas_lag(stack: LocalStack, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with page_server() as page_port:
        page_origin = f"http://localhost:{page_port}"
        server, api = web_server(tmp_path, env={"CORS_ORIGINS": page_origin, "RATE_LIMITS_ENABLED": "false"})
        server.start()
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
                try:
                    page = browser.new_page()
                    page.goto(f"{page_origin}/?api={api}")
                    signed_up = page.evaluate("signUp('page_employer')")
                    assert (signed_up["registered"], signed_up["login"]) == (201, 200), signed_up
                    mark_verified(stack, "page_employer")

                    with replay_paused(stack):
                        results = page.evaluate("token => postAndReadBack(token)", signed_up["token"])
                        shown = json.loads(page.inner_text("#results"))  # the page's own report

                    too_large = page.evaluate("bytes => tooLarge(bytes)", 2 * 1024 * 1024)

                    # A page on an origin that is not allowed cannot read anything back.
                    stranger = browser.new_page()
                    stranger.goto(f"http://127.0.0.1:{page_port}/?api={api}")
                    refused = stranger.evaluate(
                        "path => call('GET', path)", f"/api/jobs/{results['created']['body']['id']}"
                    )
                finally:
                    browser.close()
        finally:
            server.stop()

    created = results["created"]
    assert created["status"] == 201, created
    assert created["position"], "X-DB-Position is not exposed to the page"
    # Read-your-writes across origins: the position sent back reaches a node that has the job.
    assert results["withPosition"]["status"] == 200, results["withPosition"]
    assert results["withPosition"]["body"]["title"] == "Frontend engineer"
    # Without it (and the cookie is not sent cross-site) the read goes to a paused replica:
    # the replicas really were behind, and the page could read the 404 in the one error body.
    assert results["withoutPosition"]["status"] == 404, results["withoutPosition"]
    assert results["withoutPosition"]["body"]["code"] == "not_found"
    assert results["notSignedIn"]["status"] == 401
    assert results["notSignedIn"]["body"]["code"] == "not_authenticated"
    assert results["invalid"]["status"] == 422
    assert results["invalid"]["body"]["code"] == "validation_failed"
    assert shown["withPosition"]["status"] == 200
    assert too_large["status"] == 413, too_large
    assert too_large["body"]["code"] == "body_too_large"
    assert "error" in refused, refused  # fetch failed: CORS kept the answer from the page


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is installed by scripts/system-deps.sh")
def test_the_documentation_pages_render_with_only_the_apps_own_files(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    server, api = web_server(tmp_path)
    server.start()
    loaded: list[str] = []
    console_errors: list[str] = []
    rendered: dict[str, str] = {}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
            try:
                page = browser.new_page()
                page.on("requestfinished", lambda request: loaded.append(request.url))
                page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
                page.goto(f"{api}/docs")
                page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
                rendered["docs"] = page.inner_text(".swagger-ui .info .title")
                rendered["operations"] = str(page.locator(".swagger-ui .opblock").count())
                page.goto(f"{api}/redoc")
                page.wait_for_selector("[data-section-id]", timeout=20_000)
                rendered["redoc"] = page.inner_text("h1")
            finally:
                browser.close()
    finally:
        server.stop()

    assert rendered["docs"].startswith("Job platform API"), rendered
    assert int(rendered["operations"]) > 40
    assert rendered["redoc"].startswith("Job platform API"), rendered
    # A script or style the policy refused shows up here ("Refused to load/execute ..."). ReDoc's
    # footer always tries Redocly's logo from their CDN: the policy stops it (the page hides it).
    assert [error for error in console_errors if REDOC_LOGO not in error] == []
    assert f"{api}/static/docs/swagger-ui-bundle.js" in loaded
    assert [url for url in loaded if not url.startswith((api, "data:", "blob:"))] == []
