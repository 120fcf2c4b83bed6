"""The two baselines of bench.http: the project's request paths without the project.

    cd api && uvicorn bench.http_baselines:bare --port 8001 --no-access-log
    cd api && uvicorn bench.http_baselines:orm --port 8002 --no-access-log

Both answer the same paths as the project, with the same SQL, against the same databases
(DATABASE_URL for writes, the first of DATABASE_URL_READ, if any, for reads), with the
project's pool sizes (10 + 10 overflow); neither signs anyone in: the caller is the
`X-User-Id` header, the writes insert their one row (no outbox, no notifications), and login
looks the account up and verifies its argon2 hash with the project's own hasher
(`backend_app.core.security.verify_password`, in a thread as the project does), then signs a
JWT, without opening a session.

- `bare`: FastAPI with an asyncpg pool, hand-written SQL, JSON written with `json.dumps`:
  the ceiling.
- `orm`: FastAPI with SQLAlchemy 2 async sessions (`pool_pre_ping=True`), its own mapped
  classes, and pydantic response models: what most FastAPI services look like.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import asyncpg
import jwt
from fastapi import Depends, FastAPI, Header, HTTPException, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy import BigInteger, DateTime, Integer, String, Text, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from backend_app.core.config import to_asyncpg_url
from backend_app.core.security import verify_password

POOL_SIZE, MAX_OVERFLOW = 10, 10
SECRET = os.environ.get("SECRET_KEY", "bench-secret-key")


def database_urls() -> tuple[str, str]:
    """(primary, reads): SQLAlchemy URLs, as the project's settings spell them."""
    primary = to_asyncpg_url(os.environ["DATABASE_URL"])
    replicas = [to_asyncpg_url(url) for url in os.environ.get("DATABASE_URL_READ", "").split(",") if url.strip()]
    return primary, (replicas[0] if replicas else primary)


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def access_token(user_id: int) -> str:
    now = datetime.now(UTC)
    claims = {"sub": str(user_id), "iat": now, "exp": now + timedelta(minutes=15), "type": "access"}
    return jwt.encode(claims, SECRET, algorithm="HS256")


class Login(BaseModel):
    email: str
    password: str


class MessageIn(BaseModel):
    recipient_id: int
    body: str


class ApplicationIn(BaseModel):
    cover_letter: str | None = None


UserId = Annotated[int, Header(alias="X-User-Id")]

# The project's SQL (backend_app.jobs.repository.search, backend_app.posts.repository.feed).
OPEN = "closed_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
JOB_COLUMNS = "id, employer_id, title, description, location, salary_min, salary_max, expires_at, closed_at, created_at"
FOLLOWED = "(author_id = $1 OR author_id IN (SELECT followed_id FROM follows WHERE follower_id = $1))"

# --- bare: asyncpg --------------------------------------------------------------------------


def _default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def json_response(content: object, status_code: int = 200) -> Response:
    return Response(json.dumps(content, default=_default), status_code, media_type="application/json")


def _job(row: asyncpg.Record, now: datetime) -> dict[str, Any]:
    job = dict(row)
    job["is_open"] = job["closed_at"] is None and (job["expires_at"] is None or job["expires_at"] > now)
    return job


pools: dict[str, asyncpg.Pool] = {}


@asynccontextmanager
async def bare_lifespan(_: FastAPI) -> AsyncIterator[None]:
    primary, reads = database_urls()
    for name, url in (("write", primary), ("read", reads)):
        pools[name] = await asyncpg.create_pool(asyncpg_dsn(url), min_size=POOL_SIZE, max_size=POOL_SIZE + MAX_OVERFLOW)
    yield
    for pool in pools.values():
        await pool.close()


bare = FastAPI(lifespan=bare_lifespan, openapi_url=None)


@bare.get("/health")
async def bare_health() -> Response:
    return json_response({"status": "ok"})


@bare.get("/api/jobs/{job_id}")
async def bare_job(job_id: int) -> Response:
    row = await pools["read"].fetchrow(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1", job_id)
    if row is None:
        return json_response({"detail": "No such job."}, 404)
    return json_response(_job(row, datetime.now(UTC)))


@bare.get("/api/jobs")
async def bare_jobs(q: str | None = None, limit: int = 20, offset: int = 0) -> Response:
    async with pools["read"].acquire() as connection:
        if q:
            match = f"search @@ websearch_to_tsquery('english', $1) AND {OPEN}"
            total = await connection.fetchval(f"SELECT count(*) FROM jobs WHERE {match}", q)
            rows = await connection.fetch(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE {match} ORDER BY"
                " ts_rank(search, websearch_to_tsquery('english', $1)) DESC, created_at DESC, id DESC"
                " LIMIT $2 OFFSET $3",
                q,
                limit,
                offset,
            )
        else:
            total = await connection.fetchval(f"SELECT count(*) FROM jobs WHERE {OPEN}")
            rows = await connection.fetch(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE {OPEN} ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2",
                limit,
                offset,
            )
    now = datetime.now(UTC)
    return json_response({"items": [_job(r, now) for r in rows], "total": total, "limit": limit, "offset": offset})


@bare.get("/api/posts")
async def bare_feed(user_id: UserId, limit: int = 20, offset: int = 0) -> Response:
    async with pools["read"].acquire() as connection:
        total = await connection.fetchval(f"SELECT count(*) FROM posts WHERE {FOLLOWED}", user_id)
        rows = await connection.fetch(
            "SELECT id, author_id, body, created_at,"
            " (SELECT count(*) FROM post_likes WHERE post_likes.post_id = posts.id) AS like_count,"
            " (SELECT count(*) FROM comments WHERE comments.post_id = posts.id) AS comment_count"
            f" FROM posts WHERE {FOLLOWED} ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
            user_id,
            limit,
            offset,
        )
    return json_response({"items": [dict(r) for r in rows], "total": total, "limit": limit, "offset": offset})


@bare.post("/api/messages", status_code=201)
async def bare_send(message: MessageIn, user_id: UserId) -> Response:
    row = await pools["write"].fetchrow(
        "INSERT INTO messages (sender_id, recipient_id, body) VALUES ($1, $2, $3)"
        " RETURNING id, sender_id, recipient_id, body, created_at, read_at",
        user_id,
        message.recipient_id,
        message.body,
    )
    return json_response(dict(row), 201)


@bare.post("/api/jobs/{job_id}/apply", status_code=201)
async def bare_apply(job_id: int, application: ApplicationIn, user_id: UserId) -> Response:
    row = await pools["write"].fetchrow(
        "INSERT INTO applications (job_id, applicant_id, cover_letter) VALUES ($1, $2, $3)"
        " RETURNING id, job_id, applicant_id, cover_letter, status, status_changed_at, created_at",
        job_id,
        user_id,
        application.cover_letter,
    )
    return json_response(dict(row), 201)


@bare.post("/api/auth/login")
async def bare_login(login: Login) -> Response:
    row = await pools["write"].fetchrow(
        "SELECT id, password_hash FROM users WHERE lower(email) = lower($1) AND deleted_at IS NULL", login.email
    )
    if not await asyncio.to_thread(verify_password, login.password, row["password_hash"] if row else None) or not row:
        return json_response({"detail": "Incorrect email or password."}, 401)
    return json_response({"access_token": access_token(row["id"]), "token_type": "bearer"})


# --- orm: SQLAlchemy 2 async sessions, mapped classes, pydantic response models -------------


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    employer_id: Mapped[int] = mapped_column(BigInteger)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    location: Mapped[str] = mapped_column(String(200))
    salary_min: Mapped[int | None] = mapped_column(Integer)
    salary_max: Mapped[int | None] = mapped_column(Integer)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    search: Mapped[str] = mapped_column(Text, deferred=True)  # a tsvector; only used in WHERE

    @property
    def is_open(self) -> bool:
        return self.closed_at is None and (self.expires_at is None or self.expires_at > datetime.now(UTC))


class Post(Base):
    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    author_id: Mapped[int] = mapped_column(BigInteger)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Follow(Base):
    __tablename__ = "follows"

    follower_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    followed_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class PostLike(Base):
    __tablename__ = "post_likes"

    post_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class Comment(Base):
    __tablename__ = "comments"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    post_id: Mapped[int] = mapped_column(BigInteger)


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    sender_id: Mapped[int] = mapped_column(BigInteger)
    recipient_id: Mapped[int] = mapped_column(BigInteger)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Application(Base):
    __tablename__ = "applications"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[int] = mapped_column(BigInteger)
    applicant_id: Mapped[int] = mapped_column(BigInteger)
    cover_letter: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), server_default="submitted")
    status_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    password_hash: Mapped[str] = mapped_column(String(255))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    employer_id: int
    title: str
    description: str
    location: str
    salary_min: int | None
    salary_max: int | None
    expires_at: datetime | None
    closed_at: datetime | None
    created_at: datetime
    is_open: bool


class JobPage(BaseModel):
    items: list[JobOut]
    total: int
    limit: int
    offset: int


class PostOut(BaseModel):
    id: int
    author_id: int
    body: str
    created_at: datetime
    like_count: int = 0
    comment_count: int = 0


class PostPage(BaseModel):
    items: list[PostOut]
    total: int
    limit: int
    offset: int


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    sender_id: int
    recipient_id: int
    body: str
    created_at: datetime
    read_at: datetime | None


class ApplicationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    job_id: int
    applicant_id: int
    cover_letter: str | None
    status: str
    status_changed_at: datetime | None
    created_at: datetime


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - not a password


class Health(BaseModel):
    status: str


sessionmakers: dict[str, async_sessionmaker[AsyncSession]] = {}


@asynccontextmanager
async def orm_lifespan(_: FastAPI) -> AsyncIterator[None]:
    primary, reads = database_urls()
    engines = []
    for name, url in (("write", primary), ("read", reads)):
        engine = create_async_engine(url, pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW, pool_pre_ping=True)
        engines.append(engine)
        sessionmakers[name] = async_sessionmaker(engine, expire_on_commit=False)
    yield
    for engine in engines:
        await engine.dispose()


async def read_session() -> AsyncIterator[AsyncSession]:
    async with sessionmakers["read"]() as session:
        yield session


async def write_session() -> AsyncIterator[AsyncSession]:
    async with sessionmakers["write"]() as session, session.begin():
        yield session


Read = Annotated[AsyncSession, Depends(read_session)]
Write = Annotated[AsyncSession, Depends(write_session)]

orm = FastAPI(lifespan=orm_lifespan, openapi_url=None)


def _open() -> Any:
    return (Job.closed_at.is_(None)) & (Job.expires_at.is_(None) | (Job.expires_at > func.now()))


@orm.get("/health", response_model=Health)
async def orm_health() -> Health:
    return Health(status="ok")


@orm.get("/api/jobs/{job_id}", response_model=JobOut)
async def orm_job(job_id: int, session: Read) -> JobOut:
    job = await session.get(Job, job_id)
    if job is None:
        raise HTTPException(404, "No such job.")
    return JobOut.model_validate(job)


@orm.get("/api/jobs", response_model=JobPage)
async def orm_jobs(session: Read, q: str | None = None, limit: int = 20, offset: int = 0) -> JobPage:
    conditions = [_open()]
    order = [Job.created_at.desc(), Job.id.desc()]
    if q:
        query = func.websearch_to_tsquery("english", q)
        conditions.append(Job.search.op("@@")(query))
        order = [func.ts_rank(Job.search, query).desc(), *order]
    total = await session.scalar(select(func.count()).select_from(Job).where(*conditions)) or 0
    jobs = await session.scalars(select(Job).where(*conditions).order_by(*order).limit(limit).offset(offset))
    return JobPage(items=[JobOut.model_validate(j) for j in jobs], total=total, limit=limit, offset=offset)


@orm.get("/api/posts", response_model=PostPage)
async def orm_feed(session: Read, user_id: UserId, limit: int = 20, offset: int = 0) -> PostPage:
    followed = select(Follow.followed_id).where(Follow.follower_id == user_id)
    condition = or_(Post.author_id == user_id, Post.author_id.in_(followed))
    likes = select(func.count()).where(PostLike.post_id == Post.id).correlate(Post).scalar_subquery()
    comments = select(func.count()).where(Comment.post_id == Post.id).correlate(Post).scalar_subquery()
    total = await session.scalar(select(func.count()).select_from(Post).where(condition)) or 0
    rows = await session.execute(
        select(Post, likes, comments)
        .where(condition)
        .order_by(Post.created_at.desc(), Post.id.desc())
        .limit(limit)
        .offset(offset)
    )
    items = [
        PostOut(id=p.id, author_id=p.author_id, body=p.body, created_at=p.created_at, like_count=lc, comment_count=cc)
        for p, lc, cc in rows
    ]
    return PostPage(items=items, total=total, limit=limit, offset=offset)


@orm.post("/api/messages", response_model=MessageOut, status_code=201)
async def orm_send(message: MessageIn, user_id: UserId, session: Write) -> MessageOut:
    row = Message(sender_id=user_id, recipient_id=message.recipient_id, body=message.body)
    session.add(row)
    await session.flush()
    await session.refresh(row)
    return MessageOut.model_validate(row)


@orm.post("/api/jobs/{job_id}/apply", response_model=ApplicationOut, status_code=201)
async def orm_apply(job_id: int, application: ApplicationIn, user_id: UserId, session: Write) -> ApplicationOut:
    row = Application(job_id=job_id, applicant_id=user_id, cover_letter=application.cover_letter)
    session.add(row)
    await session.flush()
    await session.refresh(row)
    return ApplicationOut.model_validate(row)


@orm.post("/api/auth/login", response_model=TokenOut)
async def orm_login(login: Login, session: Write) -> TokenOut:
    user = await session.scalar(
        select(User).where(func.lower(User.email) == login.email.lower(), User.deleted_at.is_(None))
    )
    if not await asyncio.to_thread(verify_password, login.password, user.password_hash if user else None) or not user:
        raise HTTPException(401, "Incorrect email or password.")
    return TokenOut(access_token=access_token(user.id))
