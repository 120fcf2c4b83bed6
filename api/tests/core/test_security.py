"""Access tokens as `core.security` reads them: verified tokens are kept per process, and
what is kept never outlives the token or lets a forged one through."""

from __future__ import annotations

import time
from datetime import timedelta

import jwt
import pytest

from backend_app.core.config import get_settings
from backend_app.core.security import ALGORITHM, InvalidTokenError, create_access_token, read_access_token


def test_a_token_read_again_gives_the_same_caller() -> None:
    token = create_access_token(7, token_version=2, session_id=11)
    first = read_access_token(token)
    assert read_access_token(token) == first
    assert (first.user_id, first.version, first.session_id) == (7, 2, 11)


def test_a_kept_token_stops_working_when_it_expires() -> None:
    token = create_access_token(7, expires_in=timedelta(seconds=2))
    assert read_access_token(token).user_id == 7  # verified, and kept
    time.sleep(2.1)
    with pytest.raises(InvalidTokenError, match="expired"):
        read_access_token(token)


def test_an_expired_token_is_refused_the_first_time_too() -> None:
    with pytest.raises(InvalidTokenError, match="expired"):
        read_access_token(create_access_token(7, expires_in=timedelta(seconds=-1)))


def test_forged_and_malformed_tokens_are_refused_every_time() -> None:
    genuine = create_access_token(7)
    forged = jwt.encode({"sub": "1", "exp": time.time() + 600, "type": "access"}, "x" * 40, algorithm=ALGORITHM)
    tampered = genuine[:-2] + ("AA" if not genuine.endswith("AA") else "BB")
    refresh_like = jwt.encode(
        {"sub": "7", "exp": time.time() + 600, "type": "refresh"}, get_settings().secret_key, algorithm=ALGORITHM
    )
    no_expiry = jwt.encode({"sub": "7", "type": "access"}, get_settings().secret_key, algorithm=ALGORITHM)
    text_expiry = jwt.encode(
        {"sub": "7", "exp": "tomorrow", "type": "access"}, get_settings().secret_key, algorithm=ALGORITHM
    )
    for token in (forged, tampered, refresh_like, no_expiry, text_expiry, "not-a-token"):
        for _ in range(2):
            with pytest.raises(InvalidTokenError):
                read_access_token(token)
    assert read_access_token(genuine).user_id == 7
