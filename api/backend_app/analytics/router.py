"""Analytics: event ingestion and the figures computed from it (read from the replica)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status

from backend_app.analytics import service
from backend_app.analytics.buffer import new_event
from backend_app.analytics.schemas import Accepted, DayCount, EventBatch, JobStatsOut, UserStatsOut
from backend_app.auth.dependencies import CurrentUser, CurrentUserOnPrimary, OptionalUserOnPrimary
from backend_app.core import rate_limit
from backend_app.core.config import get_settings
from backend_app.core.openapi import RowId, errors
from backend_app.db.dependencies import ReadSession, WriteSession
from backend_app.jobs.dependencies import ValidJob

router = APIRouter(prefix="/api/analytics", tags=["analytics"])


@router.post(
    "/events",
    response_model=Accepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(429),
    summary="Record client events",
)
async def ingest(batch: EventBatch, request: Request, user: OptionalUserOnPrimary, session: WriteSession) -> Accepted:
    """Up to 100 client events per call; anonymous callers are welcome (user_id empty).
    RATE_LIMIT_ANALYTICS_PER_CLIENT calls per signed-in user, or per address when anonymous."""
    client = f"user:{user.id}" if user else f"address:{rate_limit.client_address(request)}"
    await rate_limit.hit(
        get_settings().rate_limit_analytics_per_client, "analytics", client, detail="Too many events; slow down."
    )
    events = [
        new_event(
            e.event_type,
            user_id=user.id if user else None,
            data=e.data,
            subject_id=e.subject_id,
            occurred_at=e.occurred_at,
        )
        for e in batch.events
    ]
    await service.accept(session=session, events=events)
    return Accepted(accepted=len(events))


@router.get("/users/{user_id}/stats", response_model=UserStatsOut, responses=errors(403))
async def user_stats(user_id: RowId, session: ReadSession, user: CurrentUser) -> UserStatsOut:
    """The account's own figures (administrators may read anyone's; 403 otherwise):
    applications sent and received are nobody else's business. Figures the aggregate task
    stored, or, before it first ran for the account, computed on this read (`computed_at` is
    then now); `POST /api/analytics/users/me/stats/refresh` stores fresh ones."""
    try:
        stats = await service.user_stats(session=session, reader=user, user_id=user_id)
    except service.Forbidden as error:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=str(error)) from None
    except service.UnknownUser:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No such user.") from None
    return UserStatsOut.model_validate(stats)


@router.post("/users/me/stats/refresh", status_code=status.HTTP_202_ACCEPTED, responses=errors(429))
async def refresh_my_stats(user: CurrentUserOnPrimary, session: WriteSession) -> dict[str, str]:
    """Recompute your figures in the background: 202 with the `task_id` to follow at `GET /api/tasks/{task_id}`.
    RATE_LIMIT_STATS_REFRESH_PER_USER calls per user (429 beyond)."""
    await rate_limit.hit(
        get_settings().rate_limit_stats_refresh_per_user,
        "stats-refresh",
        str(user.id),
        detail="Your figures were refreshed recently; try again later.",
    )
    return {"task_id": await service.request_stats_refresh(session=session, user_id=user.id)}


@router.get("/jobs/{job_id}/stats", response_model=JobStatsOut, responses=errors(403))
async def job_stats(user: CurrentUser, job: ValidJob, session: ReadSession) -> JobStatsOut:
    """For the job's employer (and administrators; 403 otherwise): views per day, each
    signed-in viewer counted once a day, and the number of applications."""
    try:
        figures = await service.job_stats(session=session, reader=user, job=job)
    except service.Forbidden as error:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=str(error)) from None
    return JobStatsOut(
        job_id=job.id,
        views_per_day=[DayCount(day=day, views=views) for day, views in figures.views_per_day],
        total_views=sum(views for _, views in figures.views_per_day),
        applications=figures.applications,
    )
