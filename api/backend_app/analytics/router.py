"""Analytics: event ingestion and the figures computed from it (read from the replica)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from backend_app.analytics import repository, service
from backend_app.analytics.buffer import new_event
from backend_app.analytics.schemas import Accepted, DayCount, EventBatch, JobStatsOut, UserStatsOut
from backend_app.auth.dependencies import CurrentUser, OptionalUser
from backend_app.core.read_replica import ReadSession, WriteSession
from backend_app.jobs.dependencies import ValidJob
from backend_app.outbox import service as outbox
from backend_app.tasks.models import TaskBackend

router = APIRouter(prefix="/api/analytics", tags=["analytics"])


@router.post("/events", response_model=Accepted, status_code=status.HTTP_202_ACCEPTED)
async def ingest(batch: EventBatch, user: OptionalUser, session: WriteSession) -> Accepted:
    """Up to 100 client events per call; anonymous callers are welcome (user_id empty)."""
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


@router.get("/users/{user_id}/stats", response_model=UserStatsOut)
async def user_stats(user_id: int, session: ReadSession, _user: CurrentUser) -> UserStatsOut:
    stats = await repository.user_stats(session, user_id)
    if stats is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail="No figures for this user yet; POST /api/analytics/users/me/stats/refresh computes yours.",
        )
    return UserStatsOut.model_validate(stats)


@router.post("/users/me/stats/refresh", status_code=status.HTTP_202_ACCEPTED)
async def refresh_my_stats(user: CurrentUser, session: WriteSession) -> dict[str, str]:
    task_id = await outbox.add(
        session=session,
        backend=TaskBackend.rq,
        queue="analytics",
        task="backend_app.core.rq_tasks.aggregate_user_stats_job",
        kwargs={"user_id": user.id},
        owner_id=user.id,
    )
    return {"task_id": task_id}


@router.get("/jobs/{job_id}/stats", response_model=JobStatsOut)
async def job_stats(job: ValidJob, session: ReadSession, _user: CurrentUser) -> JobStatsOut:
    per_day = await repository.job_views_per_day(session, job.id)
    return JobStatsOut(
        job_id=job.id,
        views_per_day=[DayCount(day=day, views=views) for day, views in per_day],
        total_views=sum(views for _, views in per_day),
        applications=await repository.job_applications(session, job.id),
    )
