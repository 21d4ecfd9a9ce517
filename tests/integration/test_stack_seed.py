"""The dev tenant of ``make run``: created once, then the same key on every re-run."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest

from deploy.stack.seed import OTP_SUBJECT, seed_dev_tenant, seed_otp_template
from libs.templates import TemplateCatalogue, fetch_template
from libs.tenants import tenant_by_api_key

pytestmark = pytest.mark.integration


async def test_a_rerun_keeps_the_dev_tenant_and_its_key(pool: asyncpg.Pool, tmp_path: Path) -> None:
    state_file = tmp_path / "dev-tenant.json"

    first = await seed_dev_tenant(pool, state_file)
    again = await seed_dev_tenant(pool, state_file)

    assert again == first
    tenant = await tenant_by_api_key(pool, first.api_key)
    assert tenant is not None
    assert tenant.id == first.tenant_id
    assert tenant.domains == ("dev.sendarix.test",)


async def test_a_dev_tenant_that_no_longer_exists_is_replaced(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    state_file = tmp_path / "dev-tenant.json"
    gone = await seed_dev_tenant(pool, state_file)
    await pool.execute("DELETE FROM tenants WHERE id = $1", uuid.UUID(gone.tenant_id))

    replacement = await seed_dev_tenant(pool, state_file)

    assert replacement.tenant_id != gone.tenant_id
    assert await tenant_by_api_key(pool, replacement.api_key) is not None
    assert await seed_dev_tenant(pool, state_file) == replacement


async def test_the_otp_template_is_seeded_once(pool: asyncpg.Pool, tmp_path: Path) -> None:
    tenant = await seed_dev_tenant(pool, tmp_path / "dev-tenant.json")

    await seed_otp_template(pool, tenant.tenant_id)
    await seed_otp_template(pool, tenant.tenant_id)

    template = await TemplateCatalogue(pool).active(tenant.tenant_id, "otp")
    assert template is not None
    assert template.version == 1
    sources = template.contents["en"]
    assert sources.subject == OTP_SUBJECT
    head = await fetch_template(pool, tenant.tenant_id, "otp")
    assert head is not None and head.category == "otp"  # its mail is security mail
    assert sources.text is not None and "{{ code }}" in sources.text
