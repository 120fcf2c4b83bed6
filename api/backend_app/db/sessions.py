"""The typed sessions: a read session type and a write session type.

A write session may be passed where a read session is wanted (it is a subclass), never the
reverse. Read sessions are read-only on the server: on a replica by nature, and on the
primary through `default_transaction_read_only`.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from backend_app.db.monitor import DatabaseNode

if TYPE_CHECKING:
    from backend_app.db.router import DatabaseRouter

T = TypeVar("T")

# How many times one statement moves to another node before its error is returned.
MAX_FAILOVERS = 3


class AsyncReadSession(AsyncSession):
    """A session for reads. It is never committed; writes through it fail on the server.

    Placed by the router; a statement whose replica connection fails is re-run on another node.
    """

    _router: DatabaseRouter | None = None
    _node: DatabaseNode | None = None
    _position: int | None = None
    _fallback_slot = False

    @property
    def node_name(self) -> str | None:
        return self._node.name if self._node is not None else None

    async def _with_failover(self, call: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        for attempt in itertools.count():
            try:
                return await call(*args, **kwargs)
            except Exception as error:
                router = self._router
                if router is None or attempt >= MAX_FAILOVERS or not router.can_fail_over(self, error):
                    raise
                await router.fail_over(self, error)
        raise AssertionError("unreachable")

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await self._with_failover(super().execute, *args, **kwargs)

    async def scalar(self, *args: Any, **kwargs: Any) -> Any:
        return await self._with_failover(super().scalar, *args, **kwargs)

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        return await self._with_failover(super().get, *args, **kwargs)

    async def get_one(self, *args: Any, **kwargs: Any) -> Any:
        return await self._with_failover(super().get_one, *args, **kwargs)


class AsyncWriteSession(AsyncReadSession):
    """A session on the primary. Committed when the request succeeds, rolled back on error.

    Never re-run elsewhere: a write that may have reached the primary is not repeated.
    """
