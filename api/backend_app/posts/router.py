"""Posts: the feed, likes and comments."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response, status

from backend_app.auth.dependencies import CurrentUser, CurrentUserOnPrimary
from backend_app.core.errors import get_or_404
from backend_app.core.openapi import RowId, errors
from backend_app.core.pagination import Limit, Offset
from backend_app.db.dependencies import ReadSession, WriteSession
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


async def valid_post_id(post_id: RowId, session: WriteSession) -> Post:
    return await get_or_404(session, Post, post_id, detail="No such post.")


async def valid_post_id_to_read(post_id: RowId, session: ReadSession) -> Post:
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
async def create_post(post: PostCreate, user: CurrentUserOnPrimary, session: WriteSession) -> PostOut:
    """Publish a post as the signed-in user; it shows in your own feed and your followers'."""
    created = await service.create_post(session=session, author=user, body=post.body)
    return PostOut(id=created.id, author_id=created.author_id, body=created.body, created_at=created.created_at)


@router.get("", response_model=PostPage, summary="Get my feed")
async def feed(user: CurrentUser, session: ReadSession, limit: Limit = 20, offset: Offset = 0) -> PostPage:
    """Your feed: posts by the people you follow and your own, newest first, with like and comment counts. Paginated
    with `limit` and `offset`."""
    rows, total = await repository.feed(session, user.id, limit=limit, offset=offset)
    return PostPage(items=[_post_out(r) for r in rows], total=total, limit=limit, offset=offset)


@router.post("/{post_id}/like", response_model=LikeOut, summary="Like a post")
async def like(user: CurrentUserOnPrimary, post: ValidPost, session: WriteSession) -> LikeOut:
    """Like a post. Idempotent: liking it again changes nothing. The author (unless it is you) is notified once per
    liker. Answers the post's like count."""
    return LikeOut(liked=True, like_count=await service.like(session=session, post=post, user=user))


@router.delete("/{post_id}/like", status_code=status.HTTP_204_NO_CONTENT, summary="Unlike a post")
async def unlike(user: CurrentUserOnPrimary, post: ValidPost, session: WriteSession) -> Response:
    """Take back your like of a post. Idempotent: 204 whether or not you had liked it (a
    retried request must not fail); 404 only when there is no such post."""
    await service.unlike(session=session, post=post, user=user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/{post_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(403))
async def delete_post(user: CurrentUserOnPrimary, post: ValidPost, session: WriteSession) -> Response:
    """Delete your own post (403 for anyone else's, as for jobs); its comments and likes go
    with it."""
    try:
        await service.delete_post(session=session, post=post, user=user)
    except service.Forbidden as error:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=str(error)) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{post_id}/comments", response_model=CommentOut, status_code=status.HTTP_201_CREATED, summary="Comment on a post"
)
async def comment(
    user: CurrentUserOnPrimary, post: ValidPost, body: CommentCreate, session: WriteSession
) -> CommentOut:
    """Comment on a post as the signed-in user; the post's author (unless it is you) is notified."""
    return CommentOut.model_validate(await service.comment(session=session, post=post, author=user, body=body.body))


@router.get("/{post_id}/comments", response_model=CommentPage, summary="List a post's comments")
async def comments(
    _user: CurrentUser, post: ReadablePost, session: ReadSession, limit: Limit = 20, offset: Offset = 0
) -> CommentPage:
    """A post's comments, oldest first; any signed-in caller. Paginated with `limit` and `offset`."""
    found, total = await repository.comments(session, post.id, limit=limit, offset=offset)
    return CommentPage(items=[CommentOut.model_validate(c) for c in found], total=total, limit=limit, offset=offset)
