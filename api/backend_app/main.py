"""The ASGI application: `uvicorn backend_app.main:app` from `api/`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.cors import CORSMiddleware

from backend_app.analytics.router import router as analytics_router
from backend_app.auth.dependencies import (
    get_current_admin,
    get_current_admin_on_primary,
    get_optional_user,
    get_optional_user_on_primary,
    get_verified_user_on_primary,
)
from backend_app.auth.router import router as auth_router
from backend_app.core.config import Settings, get_settings
from backend_app.core.errors import install_exception_handlers
from backend_app.core.logging import configure_logging
from backend_app.core.middleware import (
    BodyLimitMiddleware,
    InternalErrorMiddleware,
    RequestIdMiddleware,
    SecurityHeadersMiddleware,
)
from backend_app.core.openapi import document_errors, install_documentation, install_openapi, operation_id
from backend_app.core.tracing import API_SERVICE, setup_tracing
from backend_app.db.dependencies import get_db_read, get_db_write
from backend_app.db.lifecycle import close_database, init_database
from backend_app.db.middleware import DatabasePositionMiddleware
from backend_app.db.position import POSITION_HEADER
from backend_app.follows.router import router as follows_router
from backend_app.health.access import may_see_details
from backend_app.health.router import router as health_router
from backend_app.jobs.router import router as jobs_router
from backend_app.messages.router import router as messages_router
from backend_app.metrics.database import publisher_for
from backend_app.metrics.http import HttpMetricsMiddleware, flush_periodically
from backend_app.metrics.router import router as metrics_router
from backend_app.notifications.router import router as notifications_router
from backend_app.outbox.wakeup import RelayWakeup
from backend_app.posts.router import router as posts_router
from backend_app.tasks.router import router as tasks_router
from backend_app.users.router import router as users_router
from backend_app.videos.router import router as videos_router

logger = logging.getLogger(__name__)

VIDEO_UPLOAD_PATH = "/api/videos/upload"
# Room for the multipart boundaries and part headers around an upload of the largest size.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
REQUEST_ID_HEADER = "X-Request-ID"
# How long a browser may reuse a preflight's answer (Chromium caps it at 2 hours).
CORS_MAX_AGE_SECONDS = 600


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    # Before the engines exist (the lifespan makes them), so their statements are traced too.
    setup_tracing(API_SERVICE, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        router = init_database(settings)
        logger.info("database primary %s, %d replica(s)", router.primary.masked_url, len(router.replicas))
        if router.replicas:
            # Know every node before the first request (bounded by DB_HEALTH_CHECK_TIMEOUT),
            # then keep checking in the background.
            await router.monitor.check()
            router.monitor.ensure_running()
        # The outbox relays' NOTIFY, sent after the commits that recorded tasks, not inside them
        # (outbox/wakeup.py); this process's router figures, copied where any process answering
        # /metrics reads them; and its request figures, counted in memory and written there
        # every second.
        background = [asyncio.create_task(RelayWakeup(router.primary.url).run(), name="outbox-wakeup")]
        if settings.metrics_enabled:
            background.append(asyncio.create_task(publisher_for(router).publish_periodically(), name="router-metrics"))
            background.append(asyncio.create_task(flush_periodically(), name="http-metrics"))
        # Everything made so far (imported modules, mappers, compiled models) lives as long as
        # the process: out of the collector's sight, each full collection walks only what
        # requests make. It was a tenth of a request's CPU time in the profile (issue 15). A
        # request makes thousands of objects, nearly all freed by reference counting, so the
        # young generation is collected every 20,000 allocations instead of every 700.
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        try:
            yield
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await close_database()

    app = FastAPI(
        title="Job platform API",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=operation_id,
        # FastAPI's own OpenTelemetry support makes the server span of each request, once
        # setup_tracing set a tracer provider (untraced, it does nothing). No spans of its own
        # per dependency and endpoint: the database and Redis spans say where time went.
        telemetry={"operation_spans": False},
    )
    install_exception_handlers(app)
    install_openapi(app)
    install_documentation(app)
    # Middleware, innermost first: each added one wraps those before it.
    app.add_middleware(InternalErrorMiddleware)
    # Long enough for any replica in rotation to be past the position (its lag is bounded).
    position_max_age = int(max(60, 4 * settings.db_replica_max_lag_seconds))
    app.add_middleware(DatabasePositionMiddleware, cookie_max_age=position_max_age)
    # A body over its limit is refused before any other work.
    app.add_middleware(
        BodyLimitMiddleware,
        default_limit=settings.max_json_body_bytes,
        limits={VIDEO_UPLOAD_PATH: settings.video_max_upload_bytes + MULTIPART_OVERHEAD_BYTES},
    )
    if settings.cors_origins:
        # Outside the body limit, so a preflight is answered first and every response to an
        # allowed origin, errors included (413, 429, 503, 500), is readable by its page.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", POSITION_HEADER, REQUEST_ID_HEADER],
            # A page reads its write's position here and sends it back on its reads.
            expose_headers=[POSITION_HEADER, "Retry-After", REQUEST_ID_HEADER],
            max_age=CORS_MAX_AGE_SECONDS,
        )
    # Outermost: every response, preflights and errors included, gets the security headers.
    app.add_middleware(SecurityHeadersMiddleware)
    # Counts every answer, refusals by the middleware above included, and times it whole.
    if settings.metrics_enabled:
        app.add_middleware(HttpMetricsMiddleware)
    # Around everything: each response, a preflight or a refusal included, names its request
    # (exposed to pages by the CORS settings above), and every log line written for it too.
    app.add_middleware(RequestIdMiddleware)
    for router in (
        health_router,
        auth_router,
        users_router,
        jobs_router,
        follows_router,
        notifications_router,
        posts_router,
        messages_router,
        analytics_router,
        videos_router,
        tasks_router,
    ):
        document_errors(
            router,
            sessions=(get_db_read, get_db_write),
            administrators_only=(get_current_admin, get_current_admin_on_primary, get_verified_user_on_primary),
            sign_in_optional=(get_optional_user, get_optional_user_on_primary, may_see_details),
        )
        app.include_router(router)
    # For operators' scrapers, outside the OpenAPI document (README, "Observing it").
    if settings.metrics_enabled:
        app.include_router(metrics_router)
    # Processed videos and thumbnails, when no CDN_URL serves them.
    app.mount("/media", StaticFiles(directory=Path(settings.media_root).resolve(), check_dir=False), name="media")
    return app


_settings = get_settings()
configure_logging(_settings.log_level, _settings.log_format)
app = create_app(_settings)
