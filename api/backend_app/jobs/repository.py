"""SQL for job postings and applications."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from backend_app.jobs.models import Application, Job
from backend_app.users.repository import contains_pattern


def _is_open() -> ColumnElement[bool]:
    return and_(Job.closed_at.is_(None), or_(Job.expires_at.is_(None), Job.expires_at > func.now()))


async def search(
    session: AsyncSession,
    *,
    q: str | None,
    location: str | None,
    employer_id: int | None,
    include_closed: bool,
    limit: int,
    offset: int,
) -> tuple[list[Job], int]:
    conditions: list[ColumnElement[bool]] = [true()]
    order = [Job.created_at.desc(), Job.id.desc()]
    if q:
        query = func.websearch_to_tsquery("english", q)
        conditions.append(Job.search.op("@@")(query))
        order = [func.ts_rank(Job.search, query).desc(), *order]
    if location:
        conditions.append(Job.location.ilike(contains_pattern(location)))
    if employer_id is not None:
        conditions.append(Job.employer_id == employer_id)
    if not include_closed:
        conditions.append(_is_open())
    total = await session.scalar(select(func.count()).select_from(Job).where(*conditions)) or 0
    jobs = await session.scalars(select(Job).where(*conditions).order_by(*order).limit(limit).offset(offset))
    return list(jobs.all()), total


async def applications_for_job(
    session: AsyncSession, job_id: int, *, limit: int, offset: int
) -> tuple[list[Application], int]:
    condition = Application.job_id == job_id
    total = await session.scalar(select(func.count()).select_from(Application).where(condition)) or 0
    rows = await session.scalars(
        select(Application)
        .where(condition)
        .order_by(Application.created_at, Application.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows.all()), total


async def applications_by_applicant(
    session: AsyncSession, applicant_id: int, *, limit: int, offset: int
) -> tuple[list[Application], int]:
    condition = Application.applicant_id == applicant_id
    total = await session.scalar(select(func.count()).select_from(Application).where(condition)) or 0
    rows = await session.scalars(
        select(Application)
        .where(condition)
        .order_by(Application.created_at.desc(), Application.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows.all()), total


async def has_applied(session: AsyncSession, job_id: int, applicant_id: int) -> bool:
    found = await session.scalar(
        select(Application.id).where(Application.job_id == job_id, Application.applicant_id == applicant_id)
    )
    return found is not None
