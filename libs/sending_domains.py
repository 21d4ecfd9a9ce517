"""Sending domains: the domains a tenant sends from, their DKIM keys and their DNS standing.

Written by the ``/v1/domains`` routes, the CLI and ingest's periodic re-check; read by the
edge (through ``libs.tenants``: which domains may send) and by the sender (its keyring).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import idna
from asyncpg.pool import PoolConnectionProxy

from libs.cache import TtlCache
from libs.dkim_keys import DkimKey, new_dkim_keys
from libs.domain_records import DomainStatus, RecordCheck

MAX_DOMAIN_CHARS = 253
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class SendingDomain:
    """One domain of one tenant, with its key and what its last DNS check found."""

    tenant_id: str
    domain: str
    dkim: DkimKey
    status: DomainStatus
    checks: tuple[RecordCheck, ...]
    """What the last DNS check found, one result per record (none before the first)."""
    created_in_dev_mode: bool
    created_at: datetime
    checked_at: datetime | None
    verified_at: datetime | None


class InvalidDomain(ValueError):
    """A text that cannot be a sending domain; the message says why."""


def normalise_domain(text: str) -> str:
    """The domain as stored and published: lower case, IDNA (punycode), no final dot."""
    candidate = text.strip().rstrip(".")
    if not candidate:
        raise InvalidDomain("the domain is empty")
    try:
        ascii_form = idna.encode(candidate, uts46=True).decode("ascii")
    except idna.IDNAError as error:  # its message quotes the text: no lone surrogate may pass
        reason = str(error).encode("utf-8", "backslashreplace").decode("utf-8")
        raise InvalidDomain(f"not a valid domain name: {reason}") from None
    labels = ascii_form.split(".")
    if len(ascii_form) > MAX_DOMAIN_CHARS:
        raise InvalidDomain(f"a domain name has at most {MAX_DOMAIN_CHARS} characters")
    if len(labels) < 2:
        raise InvalidDomain("a sending domain has at least two labels (example.com)")
    if not all(_LABEL.match(label) for label in labels):
        raise InvalidDomain("each label is letters, digits and inner hyphens, 1 to 63 of them")
    if labels[-1].isdigit():
        raise InvalidDomain("an IP address is not a domain name")
    return ascii_form


def _sending_domain(row: asyncpg.Record) -> SendingDomain:
    return SendingDomain(
        tenant_id=str(row["tenant_id"]),
        domain=row["domain"],
        dkim=DkimKey(row["dkim_selector"], row["dkim_private_key"], row["dkim_public_key"]),
        status=DomainStatus(row["status"]),
        checks=tuple(RecordCheck.from_json(check) for check in row["checks"]),
        created_in_dev_mode=row["created_in_dev_mode"],
        created_at=row["created_at"],
        checked_at=row["checked_at"],
        verified_at=row["verified_at"],
    )


async def insert_domains(
    connection: asyncpg.Connection | PoolConnectionProxy | asyncpg.Pool,
    tenant_id: str,
    domains: Sequence[str],
    dev_mode: bool,
) -> list[SendingDomain]:
    """Add normalised ``domains`` to a tenant, each with a new key; the ones it had are skipped."""
    now = datetime.now(UTC)
    keys = await new_dkim_keys(len(domains), now)
    rows = await connection.fetch(
        "INSERT INTO sending_domains (tenant_id, domain, dkim_selector, dkim_private_key,"
        " dkim_public_key, created_in_dev_mode)"
        " SELECT $1, d.domain, d.selector, d.private_key, d.public_key, $6"
        " FROM unnest($2::text[], $3::text[], $4::text[], $5::text[])"
        "  AS d(domain, selector, private_key, public_key)"
        " ON CONFLICT DO NOTHING RETURNING *",
        uuid.UUID(tenant_id),
        list(domains),
        [key.selector for key in keys],
        [key.private_pem for key in keys],
        [key.public_key for key in keys],
        dev_mode,
    )
    return [_sending_domain(row) for row in rows]


async def add_domain(
    pool: asyncpg.Pool, tenant_id: str, domain: str, dev_mode: bool
) -> SendingDomain | None:
    """Add one normalised domain with a new key; None when the tenant has it already."""
    added = await insert_domains(pool, tenant_id, [domain], dev_mode)
    return added[0] if added else None


async def domain_count(pool: asyncpg.Pool, tenant_id: str) -> int:
    """How many sending domains a tenant has."""
    count: int = await pool.fetchval(
        "SELECT count(*) FROM sending_domains WHERE tenant_id = $1", uuid.UUID(tenant_id)
    )
    return count


async def sending_domain(pool: asyncpg.Pool, tenant_id: str, domain: str) -> SendingDomain | None:
    """One domain of a tenant."""
    row = await pool.fetchrow(
        "SELECT * FROM sending_domains WHERE tenant_id = $1 AND domain = $2",
        uuid.UUID(tenant_id),
        domain,
    )
    return _sending_domain(row) if row else None


async def sending_domains(pool: asyncpg.Pool, tenant_id: str) -> list[SendingDomain]:
    """Every domain of a tenant, by name."""
    rows = await pool.fetch(
        "SELECT * FROM sending_domains WHERE tenant_id = $1 ORDER BY domain", uuid.UUID(tenant_id)
    )
    return [_sending_domain(row) for row in rows]


async def remove_domain(pool: asyncpg.Pool, tenant_id: str, domain: str) -> bool:
    """Forget a domain of a tenant (its key with it); False when it had none such."""
    removed = await pool.fetchval(
        "DELETE FROM sending_domains WHERE tenant_id = $1 AND domain = $2 RETURNING true",
        uuid.UUID(tenant_id),
        domain,
    )
    return bool(removed)


async def save_check(
    pool: asyncpg.Pool,
    checked: SendingDomain,
    status: DomainStatus,
    checks: Sequence[RecordCheck],
    started: datetime,
) -> SendingDomain | None:
    """Record what a DNS check begun at ``started`` found; None when the domain was removed
    meanwhile, or checked by a check begun later (whose answers are newer: they stay).

    ``verified_at`` is when the domain last became verified: it stays while it remains so.
    """
    row = await pool.fetchrow(
        "UPDATE sending_domains SET status = $3, checks = $4, checked_at = $5,"
        " verified_at = CASE WHEN $3 <> 'verified' THEN verified_at"
        "  WHEN status = 'verified' THEN verified_at ELSE $5 END"
        " WHERE tenant_id = $1 AND domain = $2 AND (checked_at IS NULL OR checked_at <= $5)"
        " RETURNING *",
        uuid.UUID(checked.tenant_id),
        checked.domain,
        status.value,
        [check.as_json() for check in checks],
        started,
    )
    return _sending_domain(row) if row else None


async def domains_due(
    pool: asyncpg.Pool,
    unproven_before: datetime,
    verified_before: datetime,
    limit: int,
    with_dev_domains: bool,
) -> list[SendingDomain]:
    """Domains whose last check is older than their status allows, least recently checked
    first; those created in dev mode only ``with_dev_domains`` (in dev mode they send anyway)."""
    rows = await pool.fetch(
        "SELECT * FROM sending_domains WHERE (checked_at IS NULL"
        " OR (status <> 'verified' AND checked_at < $1)"
        " OR (status = 'verified' AND checked_at < $2))"
        " AND ($4 OR NOT created_in_dev_mode)"
        " ORDER BY checked_at NULLS FIRST LIMIT $3",
        unproven_before,
        verified_before,
        limit,
        with_dev_domains,
    )
    return [_sending_domain(row) for row in rows]


async def fill_missing_dkim_keys(connection: asyncpg.Connection) -> int:
    """Give every domain without a key one (those a migration brought in); return how many."""
    missing = await connection.fetch(
        "SELECT tenant_id, domain FROM sending_domains WHERE dkim_private_key IS NULL"
    )
    now = datetime.now(UTC)
    keys = await new_dkim_keys(len(missing), now)
    await connection.executemany(
        "UPDATE sending_domains SET dkim_selector = $3, dkim_private_key = $4,"
        " dkim_public_key = $5 WHERE tenant_id = $1 AND domain = $2",
        [
            (row["tenant_id"], row["domain"], key.selector, key.private_pem, key.public_key)
            for row, key in zip(missing, keys, strict=True)
        ],
    )
    return len(missing)


async def dkim_keys(pool: asyncpg.Pool, tenant_id: str) -> dict[str, DkimKey]:
    """Each domain of a tenant and the key its mail is signed with."""
    rows = await pool.fetch(
        "SELECT domain, dkim_selector, dkim_private_key, dkim_public_key FROM sending_domains"
        " WHERE tenant_id = $1 AND dkim_private_key IS NOT NULL",
        uuid.UUID(tenant_id),
    )
    return {
        row["domain"]: DkimKey(
            row["dkim_selector"], row["dkim_private_key"], row["dkim_public_key"]
        )
        for row in rows
    }


KEYRING_TTL_SECONDS = 60.0
"""How long the sender trusts its copy of a tenant's keys: a new domain signs this late."""


class DkimKeyring:
    """The keys of each tenant's domains, loaded at most once a minute per tenant."""

    def __init__(self, pool: asyncpg.Pool, ttl: float = KEYRING_TTL_SECONDS) -> None:
        self._pool = pool
        self._by_tenant: TtlCache[str, dict[str, DkimKey]] = TtlCache(ttl)

    async def key_for(self, tenant_id: str, from_domain: str) -> tuple[str, DkimKey] | None:
        """The signing domain and key for mail from ``from_domain``: the domain itself, or the
        closest parent the tenant has (a subdomain signs with its domain's key, which DMARC's
        relaxed alignment accepts)."""
        try:
            uuid.UUID(tenant_id)
        except ValueError:
            return None
        keys = await self._by_tenant.get(tenant_id, lambda: dkim_keys(self._pool, tenant_id))
        labels = from_domain.lower().split(".")
        for start in range(len(labels) - 1):
            domain = ".".join(labels[start:])
            if keys and domain in keys:
                return domain, keys[domain]
        return None
