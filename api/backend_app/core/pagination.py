"""The page parameters every list endpoint takes: `limit` 1-100 (default 20) and `offset`; and the
example a page schema shows."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

Limit = Annotated[int, Query(ge=1, le=100, description="items per page")]
# At most 2**53 - 1, as every integer the API takes: PostgreSQL refuses an OFFSET past bigint,
# and JSON clients cannot say larger integers exactly.
Offset = Annotated[int, Query(ge=0, le=2**53 - 1, description="items to skip")]


def page_example(*items: dict[str, Any], limit: int = 20, offset: int = 0) -> dict[str, Any]:
    """The OpenAPI example of a page (`{items, total, limit, offset}`) holding the given item examples."""
    return {"items": list(items), "total": len(items) + offset, "limit": limit, "offset": offset}
