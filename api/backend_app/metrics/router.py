"""`GET /metrics`: Prometheus text format, for the probe token and administrators.

Left out of the OpenAPI document: it is for operators' scrapers, not for API clients (the
README's "Observing it" documents it, with every metric).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4

from backend_app.auth.dependencies import bearer
from backend_app.core.config import get_settings
from backend_app.core.errors import ApiError
from backend_app.core.security import InvalidTokenError, read_access_token
from backend_app.health.access import SeesDetails
from backend_app.metrics.service import scrape

router = APIRouter(tags=["metrics"])


async def require_operator(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)], allowed: SeesDetails
) -> None:
    """The health details' rule (`health/access.py`): the probe token or an administrator.
    No or an unreadable token is a 401; a signed-in account that is no administrator a 403."""
    if allowed:
        return
    if credentials is not None:
        try:
            read_access_token(credentials.credentials)
        except InvalidTokenError:
            pass
        else:
            raise ApiError(403, "Metrics are for administrators and the monitoring probe.")
    raise ApiError(
        401,
        "Send `Authorization: Bearer` with the probe token or an administrator's access token.",
        headers={"WWW-Authenticate": "Bearer"},
    )


@router.get("/metrics", include_in_schema=False, dependencies=[Depends(require_operator)])
async def metrics() -> Response:
    """Every metric of every API process, and the background work's figures read now."""
    return Response(await scrape(get_settings()), media_type=CONTENT_TYPE_PLAIN_0_0_4)
