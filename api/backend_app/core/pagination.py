"""The page parameters every list endpoint takes: `limit` 1-100 (default 20) and `offset`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

Limit = Annotated[int, Query(ge=1, le=100, description="items per page")]
Offset = Annotated[int, Query(ge=0, description="items to skip")]
