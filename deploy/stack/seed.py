"""The dev tenant of ``make run`` and its ``otp`` template, so the banner's curl works at once.

The tenant's id and API key are kept in ``.state/dev/dev-tenant.json`` and reused while that
tenant exists, so the key stays the same from one ``make run`` to the next.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import asyncpg

from libs.templates import fetch_template, put_template, upsert_template
from libs.tenants import create_tenant, tenant_by_api_key

DEV_TENANT_NAME = "dev"
DEV_DOMAIN = "dev.sendarix.test"

OTP_SUBJECT = "Your {{ app }} code is {{ code }}"
OTP_TEXT = """\
Hi {{ name | default("there") }},

Your {{ app }} verification code is {{ code }}.

If you did not ask for it, you can ignore this email.
"""
OTP_HTML = """\
<p>Hi {{ name | default("there") }},</p>
<p>Your {{ app }} verification code is</p>
<p style="font-size:28px;font-weight:bold;letter-spacing:4px">{{ code }}</p>
<p>If you did not ask for it, you can ignore this email.</p>
"""


@dataclass(frozen=True)
class DevTenant:
    """The tenant a developer sends with from ``make run``."""

    tenant_id: str
    api_key: str


async def seed_dev_tenant(pool: asyncpg.Pool, state_file: Path) -> DevTenant:
    """The dev tenant remembered in ``state_file`` if it still exists, else a new one."""
    if state_file.exists():
        remembered = DevTenant(**json.loads(state_file.read_text()))
        tenant = await tenant_by_api_key(pool, remembered.api_key)
        if tenant is not None and tenant.id == remembered.tenant_id:
            return remembered
    tenant, api_key = await create_tenant(pool, DEV_TENANT_NAME, [DEV_DOMAIN], dev_mode=True)
    created = DevTenant(tenant.id, api_key)
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps(asdict(created), indent=2) + "\n")
    state_file.chmod(0o600)
    return created


async def seed_otp_template(pool: asyncpg.Pool, tenant_id: str) -> None:
    """Give the tenant an ``otp`` template unless it has one (a developer's edits stay)."""
    if await fetch_template(pool, tenant_id, "otp") is None:
        await upsert_template(pool, tenant_id, "otp", "One-time code", category="otp")
        await put_template(pool, tenant_id, "otp", OTP_SUBJECT, OTP_HTML, OTP_TEXT)
