"""Liveness and dependency health for probes and operators."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from backend_app.core.config import get_settings
from backend_app.core.read_replica import check_read_replica_health
from backend_app.health.service import queue_health

router = APIRouter(prefix="/health", tags=["health"])


@router.get("")
async def liveness() -> dict[str, str]:
    """The process answers. Deliberately touches no dependency."""
    return {"status": "ok"}


@router.get("/database", responses={503: {"description": "The primary database is down"}})
async def database_health() -> JSONResponse:
    report: dict[str, Any] = await check_read_replica_health()
    status_code = 503 if report["status"] == "unhealthy" else 200
    headers = {"Retry-After": "5"} if status_code == 503 else None
    return JSONResponse(report, status_code=status_code, headers=headers)


@router.get("/queues", responses={503: {"description": "Nothing can be queued: Redis and the primary are down"}})
async def queues_health() -> JSONResponse:
    report = await queue_health(get_settings())
    status_code = 503 if report["status"] == "unhealthy" else 200
    headers = {"Retry-After": "10"} if status_code == 503 else None
    return JSONResponse(report, status_code=status_code, headers=headers)
