"""The ASGI application: `uvicorn backend_app.main:app` from `api/`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from backend_app.analytics.router import router as analytics_router
from backend_app.auth.router import router as auth_router
from backend_app.core.config import Settings, get_settings
from backend_app.core.errors import install_exception_handlers
from backend_app.core.logging import configure_logging
from backend_app.core.read_replica import DatabasePositionMiddleware, close_database, init_database
from backend_app.follows.router import router as follows_router
from backend_app.health.router import router as health_router
from backend_app.jobs.router import router as jobs_router
from backend_app.messages.router import router as messages_router
from backend_app.notifications.router import router as notifications_router
from backend_app.posts.router import router as posts_router
from backend_app.tasks.router import router as tasks_router
from backend_app.users.router import router as users_router
from backend_app.videos.router import router as videos_router

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        router = init_database(settings)
        logger.info("database primary %s, %d replica(s)", router.primary.masked_url, len(router.replicas))
        if router.replicas:
            # Know every node before the first request (bounded by DB_HEALTH_CHECK_TIMEOUT),
            # then keep checking in the background.
            await router.monitor.check()
            router.monitor.ensure_running()
        try:
            yield
        finally:
            await close_database()

    app = FastAPI(title="Job platform API", version="0.1.0", lifespan=lifespan)
    install_exception_handlers(app)
    # Long enough for any replica in rotation to be past the position (its lag is bounded).
    position_max_age = int(max(60, 4 * settings.db_replica_max_lag_seconds))
    app.add_middleware(DatabasePositionMiddleware, cookie_max_age=position_max_age)
    app.include_router(health_router)
    app.include_router(auth_router)
    app.include_router(users_router)
    app.include_router(jobs_router)
    app.include_router(follows_router)
    app.include_router(notifications_router)
    app.include_router(posts_router)
    app.include_router(messages_router)
    app.include_router(analytics_router)
    app.include_router(videos_router)
    # Processed videos and thumbnails, when no CDN_URL serves them.
    app.mount("/media", StaticFiles(directory=Path(settings.media_root).resolve(), check_dir=False), name="media")
    app.include_router(tasks_router)
    return app


_settings = get_settings()
configure_logging(_settings.log_level)
app = create_app(_settings)
