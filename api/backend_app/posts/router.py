"""Posts: the feed, likes and comments."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, status

from backend_app.auth.dependencies import CurrentUser
from backend_app.core.errors import get_or_404
from backend_app.core.pagination import Limit, Offset
from backend_app.core.read_replica import ReadSession, WriteSession
from backend_app.posts import repository, service
from backend_app.posts.models import Post
from backend_app.posts.schemas import (
    CommentCreate,
    CommentOut,
    CommentPage,
    LikeOut,
    PostCreate,
    PostOut,
    PostPage,
)

router = APIRouter(prefix="/api/posts", tags=["posts"])


async def valid_post_id(post_id: int, session: WriteSession) -> Post:
    return await get_or_404(session, Post, post_id, detail="No such post.")


async def valid_post_id_to_read(post_id: int, session: ReadSession) -> Post:
    return await get_or_404(session, Post, post_id, detail="No such post.")


ValidPost = Annotated[Post, Depends(valid_post_id)]
ReadablePost = Annotated[Post, Depends(valid_post_id_to_read)]


def _post_out(row: Any) -> PostOut:
    post, like_count, comment_count = row
    return PostOut(
        id=post.id,
        author_id=post.author_id,
        body=post.body,
        created_at=post.created_at,
        like_count=like_count,
        comment_count=comment_count,
    )


@router.post("", response_model=PostOut, status_code=status.HTTP_201_CREATED)
async def create_post(post: PostCreate, user: CurrentUser, session: WriteSession) -> PostOut:
    created = await service.create_post(session=session, author=user, body=post.body)
    return PostOut(id=created.id, author_id=created.author_id, body=created.body, created_at=created.created_at)


@router.get("", response_model=PostPage)
async def feed(user: CurrentUser, session: ReadSession, limit: Limit = 20, offset: Offset = 0) -> PostPage:
    rows, total = await repository.feed(session, user.id, limit=limit, offset=offset)
    return PostPage(items=[_post_out(r) for r in rows], total=total, limit=limit, offset=offset)


@router.post("/{post_id}/like", response_model=LikeOut)
async def like(post: ValidPost, user: CurrentUser, session: WriteSession) -> LikeOut:
    await service.like(session=session, post=post, user=user)
    row = await repository.get_with_counts(session, post.id)
    return LikeOut(liked=True, like_count=row.like_count)


@router.post("/{post_id}/comments", response_model=CommentOut, status_code=status.HTTP_201_CREATED)
async def comment(post: ValidPost, body: CommentCreate, user: CurrentUser, session: WriteSession) -> CommentOut:
    return CommentOut.model_validate(await service.comment(session=session, post=post, author=user, body=body.body))


@router.get("/{post_id}/comments", response_model=CommentPage)
async def comments(
    post: ReadablePost, session: ReadSession, _user: CurrentUser, limit: Limit = 20, offset: Offset = 0
) -> CommentPage:
    found, total = await repository.comments(session, post.id, limit=limit, offset=offset)
    return CommentPage(items=[CommentOut.model_validate(c) for c in found], total=total, limit=limit, offset=offset)
