"""Sending domains on the real database, checked against a real DNS server on loopback: the
``/v1/domains`` routes, the from-check in and out of dev mode, the CLI and the migration step."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from click.testing import CliRunner, Result

from libs.cli import main
from libs.database import apply_migrations
from libs.domain_records import DomainStatus
from libs.domain_verification import verify_due_domains
from libs.domain_views import DomainView
from libs.sending_domains import add_domain, sending_domain
from libs.settings import Settings
from libs.tenants import Tenant, create_tenant
from services.ingest.app import IngestService
from services.ingest.routes_domains import MAX_DOMAINS_PER_TENANT
from tests.dns_server import LoopbackDns
from tests.support import started

pytestmark = pytest.mark.integration


def gateway_settings(settings: Settings, zone: LoopbackDns, dev_mode: bool) -> Settings:
    return settings.model_copy(
        update={
            "http_port": 0,
            "dev_mode": dev_mode,
            "dns_nameservers": zone.nameserver,
            "dns_timeout_seconds": 2.0,
        }
    )


@asynccontextmanager
async def gateway(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with started(IngestService(settings)) as running:
        transport = httpx.ASGITransport(app=running.api)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest.test") as http:
            yield http


@pytest.fixture(scope="module")
async def strict(settings: Settings, dns_zone: LoopbackDns) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway outside dev mode: only verified domains send."""
    async with gateway(gateway_settings(settings, dns_zone, dev_mode=False)) as client:
        yield client


@pytest.fixture(scope="module")
async def dev(settings: Settings, dns_zone: LoopbackDns) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway in dev mode, as ``make run`` and the tests run it."""
    async with gateway(gateway_settings(settings, dns_zone, dev_mode=True)) as client:
        yield client


def auth(tenant: tuple[Tenant, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant[1]}"}


def fresh_domain() -> str:
    return f"d{uuid.uuid4().hex[:10]}.example.net"


def otp(sender: str) -> dict[str, Any]:
    return {"from": sender, "to": ["jane@example.org"], "subject": "Code", "text": "123456"}


def records(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {record["kind"]: record for record in view["records"]}


def publish(zone: LoopbackDns, view: dict[str, Any], *kinds: str) -> None:
    """Put the records of ``kinds`` in DNS, as the domain's owner would."""
    for kind in kinds:
        record = records(view)[kind]
        if record["type"] == "CNAME":
            zone.add_cname(record["name"], record["value"])
        else:
            zone.add_txt(record["name"], record["value"])


async def add(client: httpx.AsyncClient, tenant: tuple[Tenant, str], domain: str) -> Any:
    response = await client.post("/v1/domains", json={"domain": domain}, headers=auth(tenant))
    assert response.status_code == 201, response.text
    return response.json()


async def verify(client: httpx.AsyncClient, tenant: tuple[Tenant, str], domain: str) -> Any:
    response = await client.post(f"/v1/domains/{domain}/verify", headers=auth(tenant))
    assert response.status_code == 200, response.text
    return response.json()


def statuses(view: dict[str, Any]) -> dict[str, str]:
    return {kind: record["status"] for kind, record in records(view).items()}


async def test_adding_a_domain_answers_the_records_to_publish(
    strict: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    label = uuid.uuid4().hex[:8]
    view = await add(strict, tenant, f"Bücher-{label}.Example")
    domain = f"xn--bcher-{label}-"
    assert view["domain"].startswith(domain) and view["domain"].endswith(".example")
    assert view["status"] == "pending" and view["created_in_dev_mode"] is False
    found = records(view)
    selector = view["dkim_selector"]
    assert found["dkim"]["name"] == f"{selector}._domainkey.{view['domain']}"
    assert found["dkim"]["value"].startswith("v=DKIM1; k=rsa; p=MIIB")
    assert "include:spf.sendarix.test" in found["spf"]["value"]
    assert found["dmarc"]["name"] == f"_dmarc.{view['domain']}"
    assert found["return_path"] == {
        "kind": "return_path",
        "type": "CNAME",
        "name": f"sx-bounces.{view['domain']}",
        "value": "bounces.sendarix.test",
        "required": True,
        "status": None,
        "reason": None,
        "found": [],
    }

    one = await strict.get(f"/v1/domains/Bücher-{label}.example", headers=auth(tenant))
    assert one.status_code == 200 and one.json()["domain"] == view["domain"]
    listed = (await strict.get("/v1/domains", headers=auth(tenant))).json()["domains"]
    assert view["domain"] in [d["domain"] for d in listed]


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"domain": "not a domain"}, "/domain"),
        ({"domain": "localhost"}, "/domain"),
        ({"domain": "user@example.com"}, "/domain"),
        ({"domain": "\ud800.example.com"}, "/domain"),
        ({"domain": 42}, "/domain"),
        ({}, "/domain"),
    ],
)
async def test_junk_is_refused_with_a_pointer(
    strict: httpx.AsyncClient, tenant: tuple[Tenant, str], body: dict[str, Any], pointer: str
) -> None:
    json_text = json.dumps(body)  # ASCII: a lone surrogate goes as its escape
    headers = auth(tenant) | {"Content-Type": "application/json"}
    response = await strict.post("/v1/domains", content=json_text, headers=headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["pointer"] for e in response.json()["errors"]] == [pointer]


async def test_conflicts_missing_domains_and_other_tenants(
    strict: httpx.AsyncClient, tenant: tuple[Tenant, str], pool: asyncpg.Pool
) -> None:
    domain = fresh_domain()
    await add(strict, tenant, domain)
    again = await strict.post("/v1/domains", json={"domain": domain.upper()}, headers=auth(tenant))
    assert (again.status_code, again.json()["code"]) == (409, "domain_exists")

    stranger = await create_tenant(pool, "stranger", ["example.test"], dev_mode=True)
    for method, path in [
        ("GET", f"/v1/domains/{domain}"),
        ("POST", f"/v1/domains/{domain}/verify"),
        ("DELETE", f"/v1/domains/{domain}"),
    ]:
        response = await strict.request(method, path, headers=auth(stranger))
        assert (response.status_code, response.json()["code"]) == (404, "not_found")
    unauthenticated = await strict.get("/v1/domains")
    assert unauthenticated.status_code == 401

    deleted = await strict.delete(f"/v1/domains/{domain}", headers=auth(tenant))
    assert deleted.status_code == 204
    gone = await strict.get(f"/v1/domains/{domain}", headers=auth(tenant))
    assert gone.status_code == 404


async def test_a_tenant_may_have_so_many_domains(
    strict: httpx.AsyncClient, tenant: tuple[Tenant, str], pool: asyncpg.Pool
) -> None:
    has = len(tenant[0].domains)
    await pool.execute(  # arranged without keys: what counts is how many there are
        "INSERT INTO sending_domains (tenant_id, domain)"
        " SELECT $1, 'd' || i || '.limit.example' FROM generate_series(1, $2) AS i",
        uuid.UUID(tenant[0].id),
        MAX_DOMAINS_PER_TENANT - has,
    )
    refused = await strict.post(
        "/v1/domains", json={"domain": fresh_domain()}, headers=auth(tenant)
    )
    assert (refused.status_code, refused.json()["code"]) == (409, "domain_limit_reached")
    deleted = await strict.delete("/v1/domains/d1.limit.example", headers=auth(tenant))
    assert deleted.status_code == 204
    await add(strict, tenant, fresh_domain())


async def test_verification_passes_fails_and_tells_why_per_record(
    strict: httpx.AsyncClient, tenant: tuple[Tenant, str], dns_zone: LoopbackDns
) -> None:
    domain = fresh_domain()
    view = await add(strict, tenant, domain)

    nothing = await verify(strict, tenant, domain)
    assert nothing["status"] == "pending"
    assert set(statuses(nothing).values()) == {"missing"}
    assert nothing["checked_at"] is not None and nothing["verified_at"] is None

    publish(dns_zone, view, "dkim", "spf")
    partial = await verify(strict, tenant, domain)
    assert partial["status"] == "pending"
    assert statuses(partial) == {
        "dkim": "pass",
        "spf": "pass",
        "return_path": "missing",
        "dmarc": "missing",
    }

    publish(dns_zone, view, "return_path")
    verified = await verify(strict, tenant, domain)
    assert verified["status"] == "verified"  # DMARC is recommended, not required
    assert statuses(verified)["dmarc"] == "missing"
    assert verified["verified_at"] is not None

    dkim_name = records(view)["dkim"]["name"]
    dns_zone.fail(dkim_name)
    unanswered = await verify(strict, tenant, domain)
    assert unanswered["status"] == "verified"
    assert records(unanswered)["dkim"]["status"] == "unchecked"
    assert records(unanswered)["dkim"]["reason"].startswith("could not check")
    assert unanswered["verified_at"] == verified["verified_at"]

    dns_zone.clear(dkim_name)
    dns_zone.add_txt(
        dkim_name, "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAsomeoneelse"
    )
    replaced = await verify(strict, tenant, domain)
    assert replaced["status"] == "failed"
    assert records(replaced)["dkim"]["status"] == "wrong_value"


async def test_outside_dev_mode_only_verified_domains_send(
    strict: httpx.AsyncClient, tenant: tuple[Tenant, str], dns_zone: LoopbackDns
) -> None:
    created_with = await strict.post(
        "/v1/messages", json=otp("app@example.test"), headers=auth(tenant)
    )
    assert created_with.status_code == 422
    problem = created_with.json()
    assert problem["code"] == "domain_not_verified"
    assert [e["pointer"] for e in problem["errors"]] == ["/from"]

    unknown = await strict.post(
        "/v1/messages", json=otp("app@elsewhere.test"), headers=auth(tenant)
    )
    assert (unknown.status_code, unknown.json()["code"]) == (403, "sender_not_allowed")

    domain = fresh_domain()
    view = await add(strict, tenant, domain)
    refused = await strict.post("/v1/messages", json=otp(f"app@{domain}"), headers=auth(tenant))
    assert refused.status_code == 422

    publish(dns_zone, view, "dkim", "spf", "return_path")
    assert (await verify(strict, tenant, domain))["status"] == "verified"
    for sender in (f"app@{domain}", f"app@mail.{domain}"):
        sent = await strict.post("/v1/messages", json=otp(sender), headers=auth(tenant))
        assert sent.status_code == 202, sent.text


async def test_in_dev_mode_domains_created_in_dev_mode_send_unverified(
    dev: httpx.AsyncClient, strict: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    added_outside = fresh_domain()
    await add(strict, tenant, added_outside)  # not in dev mode: it must be verified anywhere

    sent = await dev.post("/v1/messages", json=otp("app@example.test"), headers=auth(tenant))
    assert sent.status_code == 202, sent.text
    refused = await dev.post("/v1/messages", json=otp(f"a@{added_outside}"), headers=auth(tenant))
    assert (refused.status_code, refused.json()["code"]) == (422, "domain_not_verified")

    added_in_dev = fresh_domain()
    view = await add(dev, tenant, added_in_dev)
    assert view["created_in_dev_mode"] is True
    sent = await dev.post("/v1/messages", json=otp(f"a@{added_in_dev}"), headers=auth(tenant))
    assert sent.status_code == 202, sent.text


async def sendarix(settings: Settings, *args: str) -> Result:
    """Run the CLI in a thread (it runs its own event loop), with the given settings."""
    return await asyncio.to_thread(
        CliRunner().invoke, main, list(args), env=settings.as_env(), catch_exceptions=False
    )


async def test_the_cli_adds_shows_and_verifies_domains(
    settings: Settings, tenant: tuple[Tenant, str], dns_zone: LoopbackDns
) -> None:
    cli_settings = gateway_settings(settings, dns_zone, dev_mode=False)
    tenant_id, domain = tenant[0].id, fresh_domain()

    added = await sendarix(cli_settings, "domain", "add", "--tenant", tenant_id, domain)
    assert added.exit_code == 0, added.output
    view = json.loads(added.output)
    assert view["status"] == "pending"
    again = await sendarix(cli_settings, "domain", "add", "--tenant", tenant_id, domain)
    assert again.exit_code != 0 and "already" in again.output

    publish(dns_zone, view, "dkim", "spf", "return_path", "dmarc")
    verified = await sendarix(cli_settings, "domain", "verify", "--tenant", tenant_id, domain)
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.output)["status"] == "verified"
    assert set(statuses(json.loads(verified.output)).values()) == {"pass"}

    shown = await sendarix(cli_settings, "domain", "show", "--tenant", tenant_id, domain)
    assert json.loads(shown.output)["status"] == "verified"
    junk = await sendarix(cli_settings, "domain", "show", "--tenant", tenant_id, "no such")
    assert junk.exit_code != 0


async def test_tenant_create_gives_its_domains_keys(settings: Settings, pool: asyncpg.Pool) -> None:
    domain = fresh_domain()
    created = await sendarix(settings, "tenant", "create", "--name", "t", "--domain", domain)
    assert created.exit_code == 0, created.output
    tenant_id = json.loads(created.output)["tenant_id"]
    row = await pool.fetchrow(
        "SELECT * FROM sending_domains WHERE tenant_id = $1", uuid.UUID(tenant_id)
    )
    assert row is not None
    assert row["domain"] == domain and row["created_in_dev_mode"] is settings.dev_mode
    assert row["dkim_private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----")


async def test_migrating_gives_every_keyless_domain_a_key(
    settings: Settings, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    """What 0006 does to the domains of tenants created before it: rows without keys, keyed
    by the Python step of ``apply_migrations``."""
    domain = fresh_domain()
    await pool.execute(
        "INSERT INTO sending_domains (tenant_id, domain, created_in_dev_mode)"
        " VALUES ($1, $2, true)",
        uuid.UUID(tenant[0].id),
        domain,
    )
    await apply_migrations(settings.database_url)
    row = await pool.fetchrow(
        "SELECT * FROM sending_domains WHERE tenant_id = $1 AND domain = $2",
        uuid.UUID(tenant[0].id),
        domain,
    )
    assert row is not None
    assert row["dkim_selector"].startswith("sx")
    assert row["dkim_public_key"].startswith("MIIB")
    assert row["dkim_private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----")


async def test_the_periodic_recheck_verifies_due_domains(
    settings: Settings, pool: asyncpg.Pool, tenant: tuple[Tenant, str], dns_zone: LoopbackDns
) -> None:
    strict_settings = gateway_settings(settings, dns_zone, dev_mode=False)
    domain = fresh_domain()
    added = await add_domain(pool, tenant[0].id, domain, dev_mode=False)
    assert added is not None
    publish(dns_zone, DomainView.of(added, strict_settings).model_dump(mode="json"), "dkim", "spf")
    await verify_due_domains(pool, strict_settings, limit=10_000)
    partial = await sending_domain(pool, tenant[0].id, domain)
    assert partial is not None and partial.status is DomainStatus.PENDING

    publish(dns_zone, DomainView.of(added, strict_settings).model_dump(mode="json"), "return_path")
    await verify_due_domains(pool, strict_settings, limit=10_000)
    not_yet = await sending_domain(pool, tenant[0].id, domain)
    assert not_yet is not None and not_yet.status is DomainStatus.PENDING  # checked < 10 min ago

    await pool.execute(
        "UPDATE sending_domains SET checked_at = now() - interval '11 minutes'"
        " WHERE tenant_id = $1 AND domain = $2",
        uuid.UUID(tenant[0].id),
        domain,
    )
    await verify_due_domains(pool, strict_settings, limit=10_000)
    verified = await sending_domain(pool, tenant[0].id, domain)
    assert verified is not None and verified.status is DomainStatus.VERIFIED
