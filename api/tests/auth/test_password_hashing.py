"""Password hashes follow the ARGON2_* settings, and older ones are renewed at sign-in."""

from __future__ import annotations

import httpx
from argon2 import PasswordHasher

from devtools.devstack import LocalStack
from tests.accounts import PASSWORD, sign_up
from tests.conftest import query


async def test_a_hash_made_under_other_parameters_is_renewed_at_sign_in(
    client: httpx.AsyncClient, stack: LocalStack
) -> None:
    user_id, _ = await sign_up(client, "oldtimer")
    assert query(stack, f"SELECT password_hash FROM users WHERE id = {user_id}").startswith(
        "$argon2id$v=19$m=19456,t=2,p=1$"
    )
    # As hashed by an earlier release (argon2-cffi's defaults: 64 MiB, 3 passes, 4 lanes).
    old_hash = PasswordHasher().hash(PASSWORD)
    query(stack, f"UPDATE users SET password_hash = '{old_hash}' WHERE id = {user_id}")

    signed_in = await client.post("/api/auth/login", json={"email": "oldtimer@example.com", "password": PASSWORD})

    assert signed_in.status_code == 200
    renewed = query(stack, f"SELECT password_hash FROM users WHERE id = {user_id}").strip()
    assert renewed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert (
        await client.post("/api/auth/login", json={"email": "oldtimer@example.com", "password": PASSWORD})
    ).status_code == 200
