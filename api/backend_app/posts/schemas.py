from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

Body = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000)]


class PostCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: Body


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


class CommentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: Body


class CommentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    post_id: int
    author_id: int
    body: str
    created_at: datetime


class CommentPage(BaseModel):
    items: list[CommentOut]
    total: int
    limit: int
    offset: int


class LikeOut(BaseModel):
    liked: bool
    like_count: int
