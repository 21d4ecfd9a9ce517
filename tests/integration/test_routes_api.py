"""``/v1/routes``, ``/v1/pools``, ``/v1/retry-windows`` and ``sendarix route|pool|retry-window``
on the real database: presets, write-only passwords kept encrypted, references checked,
tenant isolation, the router's catalogue, rules naming a tenant's routes and pools."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

import asyncpg
import httpx
import pytest
from click.testing import CliRunner

from libs.cli import main
from libs.route_secrets import load_secret
from libs.routes import RouteCatalogue
from libs.settings import Settings
from libs.tenants import Tenant
from schemas.common import Lane
from tests.integration.test_api_keys import assert_problem, bearer, new_key
from tests.integration.test_rules_api import other_tenant

pytestmark = pytest.mark.integration

GMAIL = {"name": "gmail", "preset": "gmail", "username": "me@gmail.com", "password": "app-pw"}


async def test_a_preset_route_keeps_its_password_encrypted_and_never_shows_it(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings, tenant: tuple[Tenant, str]
) -> None:
    admin = bearer(tenant[1])
    created = await client.post("/v1/routes", json=GMAIL, headers=admin)
    assert created.status_code == 201, created.text
    route = created.json()
    assert (route["host"], route["port"], route["tls"], route["auth"]) == (
        "smtp.gmail.com",
        587,
        "starttls",
        "plain",
    )
    assert route["has_password"] is True and "app-pw" not in created.text
    stored = await pool.fetchval(
        "SELECT ciphertext FROM route_secrets WHERE tenant_id = $1", tenant[0].id
    )
    assert b"app-pw" not in stored
    assert await load_secret(pool, settings, tenant[0].id, "gmail") == "app-pw"

    listed = (await client.get("/v1/routes", headers=admin)).json()["routes"]
    assert [(r["name"], r["built_in"]) for r in listed] == [
        ("simulator", True),
        ("default-relay", True),
        ("gmail", False),
    ]
    presets = (await client.get("/v1/routes/presets", headers=admin)).json()["presets"]
    assert {p["name"] for p in presets} == {
        "gmail",
        "google-workspace",
        "outlook",
        "yahoo",
        "office365",
    }

    patched = await client.patch(
        "/v1/routes/gmail", json={"preset": "yahoo", "password": "new-pw"}, headers=admin
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["host"], patched.json()["port"], patched.json()["tls"]) == (
        "smtp.mail.yahoo.com",
        465,
        "implicit",
    )
    assert await load_secret(pool, settings, tenant[0].id, "gmail") == "new-pw"
    cleared = await client.patch(
        "/v1/routes/gmail",
        json={"preset": None, "auth": None, "username": None, "tls": "none"},
        headers=admin,
    )
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["has_password"] is False

    stranger = bearer((await other_tenant(pool))[1])
    for method in ("GET", "PATCH", "DELETE"):
        response = await client.request(method, "/v1/routes/gmail", headers=stranger, json={})
        assert_problem(response, 404, "not_found")
    removed = await client.delete("/v1/routes/gmail", headers=admin)
    assert removed.status_code == 200 and removed.json()["name"] == "gmail"
    assert await load_secret(pool, settings, tenant[0].id, "gmail") is None


@pytest.mark.parametrize(
    ("body", "status", "code", "pointer"),
    [
        (
            {"name": "open", "host": "relay.example.test", "auth": "plain", "username": "u"},
            422,
            "auth_requires_tls",
            "/tls",
        ),
        ({"name": "simulator", "host": "relay.example.test"}, 422, "reserved_name", "/name"),
        ({"name": "relay"}, 422, "host_required", "/host"),
        (
            {"name": "direct", "kind": "mx", "host": "mx.example.test"},
            422,
            "host_not_allowed",
            "/host",
        ),
        (
            {"name": "r", "host": "relay.example.test", "fallback": "none"},
            422,
            "unknown_route",
            "/fallback",
        ),
        (
            {"name": "r", "host": "relay.example.test", "pool": "security"},
            422,
            "pool_not_allowed",
            "/pool",
        ),
        ({"name": "r", "host": "relay.example.test", "pool": "cold"}, 422, "unknown_pool", "/pool"),
        ({"name": "Bad Name", "host": "relay.example.test"}, 422, "invalid_value", "/name"),
        ({"name": "inside", "host": "10.1.2.3"}, 422, "host_refused", "/host"),
        ({"name": "meta", "host": "169.254.169.254"}, 422, "host_refused", "/host"),
    ],
)
async def test_a_route_that_cannot_work_or_names_what_is_missing_is_refused(
    client: httpx.AsyncClient,
    tenant: tuple[Tenant, str],
    body: dict[str, object],
    status: int,
    code: str,
    pointer: str,
) -> None:
    response = await client.post("/v1/routes", json=body, headers=bearer(tenant[1]))
    if code == "invalid_value":
        assert response.status_code == 422 and response.json()["errors"][0]["pointer"] == pointer
        return
    problem = assert_problem(response, status, code)
    assert problem["errors"][0]["pointer"] == pointer


async def test_fallbacks_never_cycle_and_a_route_in_use_stays(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    admin = bearer(tenant[1])
    for name, fallback in (("c", "default-relay"), ("b", "c"), ("a", "b")):
        body = {"name": name, "host": f"{name}.example.test", "fallback": fallback}
        assert (await client.post("/v1/routes", json=body, headers=admin)).status_code == 201
    cycle = await client.patch("/v1/routes/c", json={"fallback": "a"}, headers=admin)
    assert assert_problem(cycle, 422, "fallback_cycle")["errors"][0]["pointer"] == "/fallback"
    assert_problem(await client.delete("/v1/routes/b", headers=admin), 409, "route_in_use")
    assert_problem(await client.delete("/v1/routes/simulator", headers=admin), 409, "built_in")
    again = await client.post("/v1/routes", json={"name": "a", "host": "x.test"}, headers=admin)
    assert_problem(again, 409, "route_exists")

    first = {"name": "main", "kind": "mx", "is_default": True}
    assert (await client.post("/v1/routes", json=first, headers=admin)).status_code == 201
    second = await client.patch("/v1/routes/a", json={"is_default": True}, headers=admin)
    assert second.status_code == 200 and second.json()["is_default"] is True
    main_route = (await client.get("/v1/routes/main", headers=admin)).json()
    assert (main_route["is_default"], main_route["port"], main_route["tls"]) == (
        False,
        None,
        "opportunistic",
    )

    _, reader = await new_key(client, tenant[1], scopes=["read"])
    assert (await client.get("/v1/routes", headers=bearer(reader))).status_code == 200
    refused = await client.post(
        "/v1/routes", json={"name": "x", "kind": "mx"}, headers=bearer(reader)
    )
    assert_problem(refused, 403, "forbidden")


async def test_pools_are_checked_and_kept_while_in_use(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    admin = bearer(tenant[1])
    body = {
        "name": "warm",
        "addresses": [
            {"address": "203.0.113.5", "ehlo": "mta5.example.test", "weight": 10},
            {
                "address": "2001:DB8::5",
                "ehlo": "mta6.example.test",
                "warmup_start": "2026-12-01",
                "warmup_days": 30,
            },
        ],
        "return_path_domain": "Bounces.Example.TEST",
    }
    created = await client.post("/v1/pools", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["return_path_domain"] == "bounces.example.test"
    assert created.json()["addresses"][1]["address"] == "2001:db8::5"
    listed = (await client.get("/v1/pools", headers=admin)).json()["pools"]
    assert [p["name"] for p in listed] == ["security", "transactional", "bulk", "warm"]
    bad = await client.post(
        "/v1/pools",
        json={"name": "bad", "addresses": [{"address": "300.1.1.1", "ehlo": "a.example.test"}]},
        headers=admin,
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["pointer"].startswith("/addresses/0")
    reserved = await client.post("/v1/pools", json={"name": "bulk"}, headers=admin)
    assert_problem(reserved, 422, "reserved_name")

    route = {"name": "r", "host": "relay.example.test", "pool": "warm"}
    assert (await client.post("/v1/routes", json=route, headers=admin)).status_code == 201
    assert_problem(await client.delete("/v1/pools/warm", headers=admin), 409, "pool_in_use")
    assert_problem(
        await client.patch("/v1/pools/security", json={"addresses": []}, headers=admin),
        409,
        "built_in",
    )
    patched = await client.patch("/v1/pools/warm", json={"addresses": []}, headers=admin)
    assert patched.status_code == 200 and patched.json()["addresses"] == []
    await client.patch("/v1/routes/r", json={"pool": None}, headers=admin)
    assert (await client.delete("/v1/pools/warm", headers=admin)).status_code == 200
    assert_problem(await client.get("/v1/pools/warm", headers=admin), 404, "not_found")


async def test_retry_windows_by_lane_and_the_catalogue_reads_them_with_routes_and_pools(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings, tenant: tuple[Tenant, str]
) -> None:
    admin = bearer(tenant[1])
    defaults = (await client.get("/v1/retry-windows", headers=admin)).json()
    assert defaults == {"critical": 900, "high": 86400, "normal": 172800, "bulk": 259200}
    put = await client.put("/v1/retry-windows", json={"critical": 300}, headers=admin)
    assert put.status_code == 200 and put.json()["critical"] == 300
    too_short = await client.put("/v1/retry-windows", json={"high": 10}, headers=admin)
    assert too_short.status_code == 422 and too_short.json()["errors"][0]["pointer"] == "/high"
    await client.post("/v1/pools", json={"name": "own-pool"}, headers=admin)
    route = {"name": "own", "kind": "mx", "pool": "own-pool", "is_default": True}
    assert (await client.post("/v1/routes", json=route, headers=admin)).status_code == 201

    catalogue = RouteCatalogue(pool, settings, ttl=60)
    book = await catalogue.book(tenant[0].id)
    assert book.windows[Lane.CRITICAL] == timedelta(minutes=5)
    assert book.windows[Lane.HIGH] == timedelta(hours=24)
    assert book.default_route is not None and book.default_route.name == "own"
    assert {"own-pool", "security", "bulk"} <= set(book.pools)
    assert {"own", "simulator", "default-relay"} == set(book.routes)

    await client.put("/v1/retry-windows", json={}, headers=admin)
    assert (await catalogue.book(tenant[0].id)).windows[Lane.CRITICAL] == timedelta(minutes=5)
    catalogue.discard(tenant[0].id)
    assert (await catalogue.book(tenant[0].id)).windows[Lane.CRITICAL] == timedelta(minutes=15)


async def test_rules_force_the_tenant_s_own_routes_and_pools_only(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    admin = bearer(tenant[1])
    unknown = await client.post(
        "/v1/rules", json={"action": "force_route", "route": "mine"}, headers=admin
    )
    assert assert_problem(unknown, 422, "unknown_route")["errors"][0]["pointer"] == "/route"
    no_pool = await client.post(
        "/v1/rules", json={"action": "force_pool", "pool": "mine"}, headers=admin
    )
    assert_problem(no_pool, 422, "unknown_pool")
    await client.post("/v1/routes", json={"name": "mine", "kind": "mx"}, headers=admin)
    await client.post("/v1/pools", json={"name": "mine"}, headers=admin)
    forced = await client.post(
        "/v1/rules", json={"action": "force_route", "route": "mine"}, headers=admin
    )
    assert forced.status_code == 201, forced.text
    pooled = await client.post(
        "/v1/rules", json={"action": "force_pool", "pool": "mine"}, headers=admin
    )
    assert pooled.status_code == 201, pooled.text
    built_in = await client.post(
        "/v1/rules", json={"action": "force_route", "route": "simulator"}, headers=admin
    )
    assert built_in.status_code == 201, built_in.text
    assert_problem(await client.delete("/v1/routes/mine", headers=admin), 409, "route_in_use")
    assert_problem(await client.delete("/v1/pools/mine", headers=admin), 409, "pool_in_use")
    stranger = bearer((await other_tenant(pool))[1])
    theirs = await client.post(
        "/v1/rules", json={"action": "force_route", "route": "mine"}, headers=stranger
    )
    assert_problem(theirs, 422, "unknown_route")


async def cli(settings: Settings, *args: str, stdin: str | None = None) -> dict[str, object]:
    result = await asyncio.to_thread(
        CliRunner().invoke, main, list(args), input=stdin, env=settings.as_env()
    )
    assert result.exit_code == 0, result.output
    parsed: dict[str, object] = json.loads(result.output)
    return parsed


async def test_the_cli_creates_a_preset_route_with_a_password_from_stdin(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    tenant_id = str(uuid.uuid4())
    of = ("--tenant", tenant_id)
    created = await cli(
        settings,
        *("route", "create", "o365", *of, "--preset", "office365", "--username", "me@corp.test"),
        "--password-stdin",
        stdin="s3cret\n",
    )
    assert (created["host"], created["port"], created["has_password"]) == (
        "smtp.office365.com",
        587,
        True,
    )
    assert await load_secret(pool, settings, tenant_id, "o365") == "s3cret"
    address = "203.0.113.9,mta9.example.test,50"
    made = await cli(settings, "pool", "create", "p", *of, "--address", address)
    assert made["addresses"] == [
        {
            "address": "203.0.113.9",
            "ehlo": "mta9.example.test",
            "weight": 50,
            "warmup_start": None,
            "warmup_days": None,
        }
    ]
    updated = await cli(settings, "route", "update", "o365", *of, "--pool", "p", "--default")
    assert (updated["pool"], updated["is_default"]) == ("p", True)
    windows = await cli(settings, "retry-window", "set", *of, "--critical", "600")
    assert windows["critical"] == 600
    assert (await cli(settings, "retry-window", "show", *of))["critical"] == 600
    refused = await asyncio.to_thread(
        CliRunner().invoke, main, ["pool", "delete", "p", *of], env=settings.as_env()
    )
    assert refused.exit_code != 0 and "pool_in_use" in refused.output
