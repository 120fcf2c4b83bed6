from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from backend_app.core.openapi import text
from backend_app.core.pagination import page_example

Body = text(min_length=1, max_length=5000)


class PostCreate(BaseModel):
    """A new post (`POST /api/posts`): 1-5000 characters, not counting surrounding spaces."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"body": "Started a new role as a backend engineer today!"}]}
    )

    body: Body


POST_EXAMPLE = {
    "id": 77,
    "author_id": 42,
    "body": "Started a new role as a backend engineer today!",
    "created_at": "2025-03-06T09:00:00Z",
    "like_count": 3,
    "comment_count": 1,
}


class PostOut(BaseModel):
    """A post with its like and comment counts."""

    model_config = ConfigDict(json_schema_extra={"examples": [POST_EXAMPLE]})

    id: int
    author_id: int
    body: str
    created_at: datetime
    like_count: int = 0
    comment_count: int = 0


class PostPage(BaseModel):
    """A page of posts: `items` from `offset`, at most `limit` of them, out of `total`."""

    model_config = ConfigDict(json_schema_extra={"examples": [page_example(POST_EXAMPLE)]})

    items: list[PostOut]
    total: int
    limit: int
    offset: int


class CommentCreate(BaseModel):
    """A comment on a post: 1-5000 characters, not counting surrounding spaces."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"body": "Congratulations on the new role!"}]}
    )

    body: Body


COMMENT_EXAMPLE = {
    "id": 910,
    "post_id": 77,
    "author_id": 9,
    "body": "Congratulations on the new role!",
    "created_at": "2025-03-06T17:45:00Z",
}


class CommentOut(BaseModel):
    """A comment on a post."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={"examples": [COMMENT_EXAMPLE]},
    )

    id: int
    post_id: int
    author_id: int
    body: str
    created_at: datetime


class CommentPage(BaseModel):
    """A page of a post's comments: `items` from `offset`, at most `limit` of them, out of `total`."""

    model_config = ConfigDict(json_schema_extra={"examples": [page_example(COMMENT_EXAMPLE)]})

    items: list[CommentOut]
    total: int
    limit: int
    offset: int


class LikeOut(BaseModel):
    """Your like of a post and the post's like count after it."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"liked": True, "like_count": 4}]})

    liked: bool
    like_count: int
