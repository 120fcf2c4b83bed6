"""SQL for analytics events and per-user figures."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from sqlalchemy import Date, cast, func, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend_app.analytics.models import AnalyticsEvent, UserStats
from backend_app.follows.models import Follow
from backend_app.jobs.models import Application, Job
from backend_app.posts.models import Post

# One statement for a whole batch: arrays in, rows out; a repeated event id is skipped.
_INSERT_BATCH = text(
    """
    INSERT INTO analytics_events (event_id, event_type, user_id, subject_id, data, occurred_at)
    SELECT * FROM unnest(
        CAST(:event_ids AS uuid[]), CAST(:event_types AS text[]), CAST(:user_ids AS bigint[]),
        CAST(:subject_ids AS bigint[]), CAST(:datas AS jsonb[]), CAST(:occurred AS timestamptz[])
    )
    ON CONFLICT (event_id) DO NOTHING
    """
)


async def insert_batch(session: AsyncSession, events: list[dict[str, Any]]) -> int:
    """Insert events given as dicts (event_id, event_type, user_id, subject_id, data, occurred_at)."""
    if not events:
        return 0
    result = await session.execute(
        _INSERT_BATCH,
        {
            "event_ids": [e["event_id"] for e in events],
            "event_types": [e["event_type"] for e in events],
            "user_ids": [e.get("user_id") for e in events],
            "subject_ids": [e.get("subject_id") for e in events],
            "datas": [json.dumps(e.get("data") or {}) for e in events],
            "occurred": [e["occurred_at"] for e in events],
        },
    )
    return result.rowcount or 0


async def compute_user_stats(session: AsyncSession, user_id: int) -> dict[str, int]:
    async def count(statement: Any) -> int:
        return int(await session.scalar(statement) or 0)

    return {
        "followers": await count(select(func.count()).select_from(Follow).where(Follow.followed_id == user_id)),
        "following": await count(select(func.count()).select_from(Follow).where(Follow.follower_id == user_id)),
        "posts": await count(select(func.count()).select_from(Post).where(Post.author_id == user_id)),
        "applications_sent": await count(
            select(func.count()).select_from(Application).where(Application.applicant_id == user_id)
        ),
        "applications_received": await count(
            select(func.count())
            .select_from(Application)
            .join(Job, Job.id == Application.job_id)
            .where(Job.employer_id == user_id)
        ),
        "job_views": await count(
            select(func.count(func.distinct(tuple_(AnalyticsEvent.subject_id, AnalyticsEvent.user_id, _utc_day()))))
            .select_from(AnalyticsEvent)
            .join(Job, Job.id == AnalyticsEvent.subject_id)
            .where(AnalyticsEvent.event_type == "job_view", Job.employer_id == user_id)
        ),
    }


async def store_user_stats(session: AsyncSession, user_id: int, figures: dict[str, int]) -> None:
    await session.execute(
        insert(UserStats)
        .values(user_id=user_id, **figures)
        .on_conflict_do_update(index_elements=[UserStats.user_id], set_={**figures, "computed_at": func.now()})
    )


async def user_stats(session: AsyncSession, user_id: int) -> UserStats | None:
    return await session.get(UserStats, user_id)


def _utc_day() -> Any:
    return cast(func.timezone("UTC", AnalyticsEvent.occurred_at), Date)


async def job_views_per_day(session: AsyncSession, job_id: int) -> list[tuple[date, int]]:
    """Views per UTC day, each signed-in viewer counted once a day however often they looked."""
    day = _utc_day()
    rows = await session.execute(
        select(day, func.count(func.distinct(AnalyticsEvent.user_id)))
        .where(AnalyticsEvent.event_type == "job_view", AnalyticsEvent.subject_id == job_id)
        .group_by(day)
        .order_by(day)
    )
    return [(row[0], row[1]) for row in rows.all()]


async def job_applications(session: AsyncSession, job_id: int) -> int:
    return int(
        await session.scalar(select(func.count()).select_from(Application).where(Application.job_id == job_id)) or 0
    )
