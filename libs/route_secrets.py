"""Relay passwords, encrypted at rest: written by the routes API, read only by the sender.

Fernet (AES-128-CBC with an HMAC-SHA256 tag) under a key derived from ``credentials_key``: a
database dump or a replica alone reveals no password, and a tampered ciphertext is refused
rather than decrypted into garbage.
"""

from __future__ import annotations

import base64

import asyncpg
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from libs.database import Connection
from libs.settings import Settings

KEY_INFO = b"sendarix route secrets v1"


class CredentialsKeyMissing(RuntimeError):
    """No ``credentials_key`` is configured: passwords can be neither stored nor read."""


def _fernet(settings: Settings) -> Fernet:
    if not settings.credentials_key:
        raise CredentialsKeyMissing("SENDARIX_CREDENTIALS_KEY is not set")
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KEY_INFO).derive(
        settings.credentials_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt(settings: Settings, password: str) -> bytes:
    """``password`` encrypted for storage."""
    return _fernet(settings).encrypt(password.encode())


def decrypt(settings: Settings, ciphertext: bytes) -> str | None:
    """The password, or None when it was encrypted under another key or tampered with."""
    try:
        return _fernet(settings).decrypt(ciphertext).decode()
    except InvalidToken:
        return None


async def store_secret(
    connection: Connection, settings: Settings, tenant_id: str, route: str, password: str
) -> None:
    """Keep (or replace) the password of a tenant's route."""
    await connection.execute(
        "INSERT INTO route_secrets (tenant_id, route, ciphertext) VALUES ($1, $2, $3)"
        " ON CONFLICT (tenant_id, route) DO UPDATE"
        " SET ciphertext = excluded.ciphertext, updated_at = now()",
        tenant_id,
        route,
        encrypt(settings, password),
    )


async def delete_secret(connection: Connection, tenant_id: str, route: str) -> None:
    """Forget the password of a tenant's route."""
    await connection.execute(
        "DELETE FROM route_secrets WHERE tenant_id = $1 AND route = $2", tenant_id, route
    )


async def load_secret(
    pool: asyncpg.Pool, settings: Settings, tenant_id: str, route: str
) -> str | None:
    """The password of a tenant's route (None: it has none, or it cannot be decrypted)."""
    ciphertext = await pool.fetchval(
        "SELECT ciphertext FROM route_secrets WHERE tenant_id = $1 AND route = $2",
        tenant_id,
        route,
    )
    return decrypt(settings, ciphertext) if ciphertext is not None else None
