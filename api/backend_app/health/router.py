"""Liveness and dependency health for probes and operators."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from backend_app.core.config import get_settings
from backend_app.db.lifecycle import check_read_replica_health
from backend_app.health.access import SeesDetails
from backend_app.health.service import queue_health

router = APIRouter(prefix="/health", tags=["health"])

# The documented shapes of the reports (the routes build them as dicts). Details shown to
# administrators and probes are further fields, hence extra="allow".
Status = Literal["healthy", "degraded", "unhealthy"]


class Liveness(BaseModel):
    """The process is up."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"]


class NodeHealth(BaseModel):
    """One database node's status; details (role, latency, pool) for those who may see them."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{"status": "healthy"}]})
    status: Literal["healthy", "unhealthy"]


class ReplicaHealth(NodeHealth):
    """A read replica's name and status; details (lag, WAL position, ban) for those who may see them."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "replica-1", "status": "healthy"}]})

    name: str


class DatabaseHealth(BaseModel):
    """Each database node's status; details (roles, lag, positions, pools) for those who may see them."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "status": "degraded",
                    "primary": {"status": "healthy"},
                    "replicas": [
                        {"name": "replica-1", "status": "healthy"},
                        {"name": "replica-2", "status": "unhealthy"},
                    ],
                }
            ]
        },
    )
    status: Literal["healthy", "degraded", "unhealthy", "not_configured"]
    primary: NodeHealth
    replicas: list[ReplicaHealth]


class QueuesHealth(BaseModel):
    """The overall status and the problems found; details (Redis, workers, queues, outbox) for
    those who may see them."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [{"status": "degraded", "problems": ["queue emails: no worker is consuming it"]}]
        },
    )
    status: Status
    problems: list[str] = Field(examples=[["queue emails: no worker is consuming it"]])


@router.get("", response_model=Liveness)
async def liveness() -> dict[str, str]:
    """The process answers. Deliberately touches no dependency."""
    return {"status": "ok"}


@router.get(
    "/database",
    response_model=DatabaseHealth,
    responses={503: {"model": DatabaseHealth, "description": "The primary database is down (the same report)"}},
)
async def database_health(details: SeesDetails) -> JSONResponse:
    """The primary's and each replica's status. Administrators and `Authorization: Bearer
    <PROBE_TOKEN>` also see roles, latency, lag, WAL positions, pools, bans and routing
    counters (URLs with their passwords masked)."""
    report: dict[str, Any] = await check_read_replica_health()
    status_code = 503 if report["status"] == "unhealthy" else 200
    headers = {"Retry-After": "5"} if status_code == 503 else None
    return JSONResponse(report if details else _database_summary(report), status_code=status_code, headers=headers)


@router.get(
    "/queues",
    response_model=QueuesHealth,
    responses={
        503: {
            "model": QueuesHealth,
            "description": "Nothing can be queued: Redis and the primary are down (the same report)",
        }
    },
)
async def queues_health(details: SeesDetails) -> JSONResponse:
    """The overall status and the problems found. Administrators and `Authorization: Bearer
    <PROBE_TOKEN>` also see Redis, workers, queue depths, canaries and the outbox backlog."""
    report = await queue_health(get_settings())
    status_code = 503 if report["status"] == "unhealthy" else 200
    headers = {"Retry-After": "10"} if status_code == 503 else None
    summary = {"status": report["status"], "problems": report["problems"]}
    return JSONResponse(report if details else summary, status_code=status_code, headers=headers)


def _database_summary(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": report["status"],
        "primary": {"status": report["primary"]["status"]},
        "replicas": [{"name": replica["name"], "status": replica["status"]} for replica in report["replicas"]],
    }
