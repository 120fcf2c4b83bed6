"""Who sees the details of /health/queues and /health/database.

Probes need only the status of each part; the details (hosts, database users, ports, WAL
positions, the Redis URL, worker names) help an attacker as much as an operator. They are
shown to administrators (their access token) and to requests that carry
`Authorization: Bearer <PROBE_TOKEN>` (a setting; Prometheus and most probes can send a
bearer token). Everyone else gets the short answer.
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials

from backend_app.auth.dependencies import bearer
from backend_app.auth.service import user_of_open_session
from backend_app.core.config import get_settings
from backend_app.core.security import InvalidTokenError, read_access_token
from backend_app.db.errors import is_connection_error
from backend_app.db.lifecycle import get_database_router

logger = logging.getLogger(__name__)


async def may_see_details(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> bool:
    """True for the probe token or an administrator's valid access token. Never raises: a
    bad token, or a database that cannot say who is an administrator, gets the short answer."""
    if credentials is None:
        return False
    probe_token = get_settings().probe_token
    if probe_token and hmac.compare_digest(credentials.credentials.encode(), probe_token.encode()):
        return True
    try:
        token = read_access_token(credentials.credentials)
    except InvalidTokenError:
        return False
    try:
        async with get_database_router().read_session() as session:
            user = await user_of_open_session(session, token)
    except Exception as error:
        if not is_connection_error(error):
            raise
        logger.info("health details refused: cannot check the caller is an administrator (%s)", error)
        return False
    # A signed-out administrator's token shows nothing more than anyone's.
    return user is not None and user.is_admin


SeesDetails = Annotated[bool, Depends(may_see_details)]
