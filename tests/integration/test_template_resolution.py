"""Ingest resolves each recipient's template version on the real database: experiments in
small sticky cohorts, security mail kept stable, archived templates refused, the template's
category taken, data checked against every version a recipient gets."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from opentelemetry.context import Context

from libs.template_choice import in_cohort
from libs.template_store import HeadPatch, patch_template
from libs.templates import LocaleContent, TemplateVariable, add_version, upsert_template
from libs.tenants import Tenant
from schemas.common import Lane
from schemas.pipeline import AcceptedMessage, MessageSpec
from schemas.send import SendRequest
from services.ingest.accept import Ready, Refused, prepare
from services.ingest.app import IngestService
from tests.template_rows import archive, start_experiment

pytestmark = pytest.mark.integration

RECIPIENTS = [f"user{n}@example.org" for n in range(1000)]
PER_REQUEST = 50


def request(alias: str, to: list[str], **fields: Any) -> SendRequest:
    values = {"from": "hello@example.test", "to": to, "template": alias, "data": {"name": "Zoë"}}
    return SendRequest.model_validate(values | fields)


async def template(
    pool: asyncpg.Pool, tenant_id: str, category: str | None, *variant_needs: str
) -> str:
    """A template with an active v1 and a v2 (the variant) reading ``variant_needs`` too."""
    alias = f"welcome-{uuid.uuid4().hex[:8]}"
    await upsert_template(pool, tenant_id, alias, category=category)
    first = {"en": LocaleContent(subject="Welcome {{ name }}", text="v1")}
    await add_version(pool, tenant_id, alias, first, activate=True)
    extra = "".join(f" {{{{ {name} }}}}" for name in variant_needs)
    second = {"en": LocaleContent(subject="Hello {{ name }}", text="v2" + extra)}
    declared = [TemplateVariable(name=name) for name in ("name", *variant_needs)]
    await add_version(pool, tenant_id, alias, second, variables=declared)
    return alias


async def specs(service: IngestService, tenant: Tenant, sent: SendRequest) -> list[MessageSpec]:
    """The messages ingest would publish for ``sent`` (prepared, not published)."""
    ids = [str(uuid.uuid4()) for _ in sent.to]
    ready = await prepare(service.ingest, tenant, sent, ids, Context(), door="http")
    assert isinstance(ready, Ready), ready
    return [
        AcceptedMessage.model_validate_json(p.value).message
        for p in ready.publications
        if p.topic.startswith(f"{service.settings.topic_prefix}sendarix.render.")
    ]


async def versions_of(
    service: IngestService, tenant: Tenant, alias: str, **fields: Any
) -> dict[str, int | None]:
    """The version each of the 1,000 recipients gets, sent 50 to a request."""
    chosen: dict[str, int | None] = {}
    for start in range(0, len(RECIPIENTS), PER_REQUEST):
        sent = request(alias, RECIPIENTS[start : start + PER_REQUEST], **fields)
        for spec in await specs(service, tenant, sent):
            chosen[spec.recipient.address] = spec.template_version
    return chosen


async def test_an_experiment_at_ten_percent_sends_a_tenth_the_variant_always_the_same(
    service: IngestService, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    alias = await template(pool, tenant[0].id, "onboarding")
    await start_experiment(pool, tenant[0].id, alias, 2, 10)

    chosen = await versions_of(service, tenant[0], alias)
    assert set(chosen) == set(RECIPIENTS)
    variant = [address for address, version in chosen.items() if version == 2]
    # Binomial(1000, 0.1) over experiment ids: standard deviation 9.5; 30 is over 3 of them.
    assert 70 <= len(variant) <= 130
    assert {version for version in chosen.values()} == {1, 2}
    assert await versions_of(service, tenant[0], alias) == chosen  # sticky per recipient


async def test_security_mail_keeps_the_active_version_unless_the_experiment_overrides_it(
    service: IngestService, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    # started on an onboarding template that then became an OTP one (the API refuses to start
    # one on an OTP template): ingest still keeps security mail on the active version
    otp = await template(pool, tenant[0].id, "onboarding")
    await start_experiment(pool, tenant[0].id, otp, 2, 50)
    await patch_template(pool, tenant[0].id, otp, HeadPatch(category="otp"))
    assert set((await versions_of(service, tenant[0], otp)).values()) == {1}

    onboarding = await template(pool, tenant[0].id, "onboarding")
    await start_experiment(pool, tenant[0].id, onboarding, 2, 50)
    as_otp = await versions_of(service, tenant[0], onboarding, category="password_reset")
    assert set(as_otp.values()) == {1}  # the message's category counts, not only the template's

    overridden = await template(pool, tenant[0].id, "otp")
    await start_experiment(pool, tenant[0].id, overridden, 2, 50, override_critical=True)
    assert set((await versions_of(service, tenant[0], overridden)).values()) == {1, 2}


async def test_a_message_takes_its_templates_category_unless_it_names_one(
    service: IngestService, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    alias = await template(pool, tenant[0].id, "otp")
    [spec] = await specs(service, tenant[0], request(alias, ["jane@example.org"]))
    assert (spec.category, spec.lane, spec.template_version) == ("otp", Lane.CRITICAL, 1)
    named = request(alias, ["jane@example.org"], category="notification")
    [spec] = await specs(service, tenant[0], named)
    assert (spec.category, spec.lane) == ("notification", Lane.NORMAL)


async def test_data_is_checked_against_every_version_a_recipient_gets(
    service: IngestService, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    alias = await template(pool, tenant[0].id, "onboarding", "coupon")
    experiment = await start_experiment(pool, tenant[0].id, alias, 2, 50)
    inside = next(r for r in RECIPIENTS if in_cohort(experiment.id, r, 50))
    outside = next(r for r in RECIPIENTS if not in_cohort(experiment.id, r, 50))

    [spec] = await specs(service, tenant[0], request(alias, [outside]))
    assert spec.template_version == 1  # the active version needs no coupon
    both = request(alias, [outside, inside])
    refused = await prepare(service.ingest, tenant[0], both, ["", ""], Context(), door="http")
    assert isinstance(refused, Refused)
    assert [(v.code, v.pointer) for v in refused.violations] == [
        ("missing_template_data", "/data/coupon")
    ]
    with_coupon = request(alias, [outside, inside], data={"name": "Zoë", "coupon": "C1"})
    chosen = [spec.template_version for spec in await specs(service, tenant[0], with_coupon)]
    assert chosen == [1, 2]


async def test_an_archived_template_is_refused_and_an_unknown_one_too(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    alias = await template(pool, tenant[0].id, None)
    await archive(pool, tenant[0].id, alias)
    headers = {"Authorization": f"Bearer {tenant[1]}"}
    body = request(alias, ["jane@example.org"]).model_dump(mode="json", by_alias=True)
    archived = await client.post("/v1/messages", json=body, headers=headers)
    assert archived.status_code == 422, archived.text
    assert archived.json()["code"] == "template_archived"
    unknown = await client.post("/v1/messages", json=body | {"template": "nope"}, headers=headers)
    assert (unknown.status_code, unknown.json()["code"]) == (422, "unknown_template")


async def test_a_request_may_pin_a_version_and_no_experiment_applies_to_it(
    client: httpx.AsyncClient,
    service: IngestService,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
) -> None:
    alias = await template(pool, tenant[0].id, "onboarding")
    await start_experiment(pool, tenant[0].id, alias, 2, 50)

    pinned = await versions_of(service, tenant[0], alias, template_version=1)
    assert set(pinned.values()) == {1}  # nobody diverted to the variant
    inactive = await versions_of(service, tenant[0], alias, template_version=2)
    assert set(inactive.values()) == {2}  # any version that exists, active or not

    headers = {"Authorization": f"Bearer {tenant[1]}"}
    body = request(alias, ["jane@example.org"]).model_dump(mode="json", by_alias=True)
    missing = await client.post(
        "/v1/messages", json=body | {"template_version": 3}, headers=headers
    )
    assert missing.status_code == 422, missing.text
    assert missing.json()["code"] == "unknown_template_version"
    inline = {"from": "hello@example.test", "to": "jane@example.org", "subject": "Hi"}
    lone = await client.post(
        "/v1/messages", json=inline | {"text": "Hi", "template_version": 1}, headers=headers
    )
    assert (lone.status_code, lone.json()["code"]) == (422, "template_required")
    await archive(pool, tenant[0].id, alias)
    service.ingest.templates.discard(tenant[0].id, alias)  # as the API's archive does
    archived = await client.post(
        "/v1/messages", json=body | {"template_version": 1}, headers=headers
    )
    assert (archived.status_code, archived.json()["code"]) == (422, "template_archived")
