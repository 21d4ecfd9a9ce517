"""``/v1/templates``, ``/v1/layouts`` and experiments on the real database, through ingest's
gateway: tenant isolation, versions and their activation, layouts pinned, experiments refused on
security mail, and their outcomes read back from what the analytics service aggregates."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from libs.settings import Settings
from libs.tenants import Tenant
from schemas.common import Lane, Stream
from schemas.events import EventData, MessageState, delivery_event
from services.analytics import store as analytics_store
from services.analytics.aggregate import Tally
from services.ingest.app import IngestService
from tests.integration.test_api_keys import assert_problem, bearer, new_key
from tests.integration.test_cli import sendarix
from tests.integration.test_rules_api import other_tenant

pytestmark = pytest.mark.integration

LAYOUT = {"html": "<html><body>{{ content }}<footer>Acme</footer></body></html>"}


def version(subject: str = "Hi {{ name }}", **fields: Any) -> dict[str, Any]:
    """A version body: English and Portuguese, declaring ``name``."""
    body: dict[str, Any] = {
        "contents": {
            "en": {"subject": subject, "html": "<p>Hello {{ name }}</p>"},
            "pt-BR": {"subject": "Olá {{ name }}", "html": "<p>Olá {{ name }}</p>"},
        },
        "variables": [{"name": "name", "example": "Jane"}],
    }
    return body | fields


async def created(
    client: httpx.AsyncClient, admin: dict[str, str], path: str, body: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post(path, json=body, headers=admin)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


def alias() -> str:
    return f"welcome-{uuid.uuid4().hex[:6]}"


async def test_versions_are_added_activated_and_rolled_back_by_their_tenant_only(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    service: IngestService,
    tenant: tuple[Tenant, str],
) -> None:
    admin, name = bearer(tenant[1]), alias()
    body = {"alias": name, "name": "Welcome", "version": version(activate=True)}
    template = await created(client, admin, "/v1/templates", body)
    assert (template["active_version"], template["latest_version"]) == (1, 1)
    assert template["active"]["contents"]["pt-BR"]["subject"] == "Olá {{ name }}"
    assert template["version"]["default_locale"] == "en"
    again = await client.post("/v1/templates", json=body, headers=admin)
    assert_problem(again, 409, "template_exists")

    second = await created(client, admin, f"/v1/templates/{name}/versions", version("Yo"))
    assert second["version"] == 2
    shown = (await client.get(f"/v1/templates/{name}", headers=admin)).json()
    assert shown["active_version"] == 1, "a version is not active until activated"
    catalogue = service.api.state.ingest.templates
    assert (await catalogue.active(tenant[0].id, name)).version == 1
    activated = await client.post(f"/v1/templates/{name}/versions/2/activate", headers=admin)
    assert activated.json()["active"]["contents"]["en"]["subject"] == "Yo"
    assert (await catalogue.active(tenant[0].id, name)).version == 2, "applied at once here"
    rolled_back = await client.post(f"/v1/templates/{name}/versions/1/activate", headers=admin)
    assert rolled_back.json()["active_version"] == 1
    assert (await catalogue.active(tenant[0].id, name)).version == 1
    listed = (await client.get(f"/v1/templates/{name}/versions", headers=admin)).json()
    assert [v["version"] for v in listed["versions"]] == [2, 1]
    one = await client.get(f"/v1/templates/{name}/versions/2", headers=admin)
    assert one.json()["contents"]["en"]["subject"] == "Yo"
    for missing in ("3", "x", "-1"):
        path = f"/v1/templates/{name}/versions/{missing}"
        assert_problem(await client.get(path, headers=admin), 404, "not_found")
        assert_problem(await client.post(path + "/activate", headers=admin), 404, "not_found")

    stranger = bearer((await other_tenant(pool))[1])
    for method, path in (
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("GET", "/versions"),
        ("POST", "/versions"),
        ("GET", "/versions/1"),
        ("POST", "/versions/1/activate"),
        ("GET", "/experiments"),
    ):
        body = version() if path == "/versions" else {"name": "mine"}
        response = await client.request(
            method, f"/v1/templates/{name}{path}", json=body, headers=stranger
        )
        assert_problem(response, 404, "not_found")
    assert (await client.get("/v1/templates", headers=stranger)).json() == {"templates": []}
    for unusable in ("Bad%00Alias", "x" * 200):
        path = f"/v1/templates/{unusable}/versions/1"
        assert_problem(await client.get(path, headers=admin), 404, "not_found")
    assert [
        t["alias"] for t in (await client.get("/v1/templates", headers=admin)).json()["templates"]
    ] == [name]


async def test_archiving_hides_a_template_and_patch_restores_it(
    client: httpx.AsyncClient, service: IngestService, tenant: tuple[Tenant, str]
) -> None:
    admin, name = bearer(tenant[1]), alias()
    body = {"alias": name, "category": "onboarding", "version": version(activate=True)}
    await created(client, admin, "/v1/templates", body)
    catalogue = service.api.state.ingest.templates
    assert await catalogue.active(tenant[0].id, name) is not None
    archived = await client.delete(f"/v1/templates/{name}", headers=admin)
    assert archived.status_code == 200 and archived.json()["archived_at"] is not None
    assert await catalogue.active(tenant[0].id, name) is None, "sends refused at once"
    assert (await client.get("/v1/templates", headers=admin)).json()["templates"] == []
    hidden = await client.get("/v1/templates", params={"archived": "true"}, headers=admin)
    assert [t["alias"] for t in hidden.json()["templates"]] == [name]
    bad = await client.get("/v1/templates", params={"archived": "maybe"}, headers=admin)
    assert assert_problem(bad, 422, "invalid_parameter")["errors"][0]["pointer"] == "archived"
    versions = (await client.get(f"/v1/templates/{name}/versions", headers=admin)).json()
    assert len(versions["versions"]) == 1, "versions are kept"

    restored = await client.patch(
        f"/v1/templates/{name}", json={"archived": False, "name": "Hello"}, headers=admin
    )
    assert restored.status_code == 200, restored.text
    assert (restored.json()["archived_at"], restored.json()["name"]) == (None, "Hello")
    assert restored.json()["category"] == "onboarding"
    assert (await catalogue.active(tenant[0].id, name)).version == 1


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"alias": "Not An Alias"}, "/alias"),
        ({"alias": "ok", "category": "Bad Category"}, "/category"),
        ({"alias": "ok", "version": {"contents": {}}}, "/version/contents"),
        (
            {"alias": "ok", "version": {"contents": {"en": {"subject": "s"}}}},
            "/version/contents/en",
        ),
        ({"alias": "ok", "version": version(default_locale="fr")}, "/version"),
        ({"alias": "ok", "surprise": 1}, "/surprise"),
    ],
)
async def test_a_malformed_template_is_422_naming_the_field(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str], body: dict[str, Any], pointer: str
) -> None:
    response = await client.post("/v1/templates", json=body, headers=bearer(tenant[1]))
    problem = assert_problem(response, 422, "invalid_request")
    assert problem["errors"][0]["pointer"] == pointer
    listed = await client.get("/v1/templates", headers=bearer(tenant[1]))
    assert listed.json()["templates"] == []


async def test_reading_keys_read_but_do_not_write(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    name = alias()
    await created(client, bearer(tenant[1]), "/v1/templates", {"alias": name})
    _, reader = await new_key(client, tenant[1], scopes=["read"])
    assert (await client.get(f"/v1/templates/{name}", headers=bearer(reader))).status_code == 200
    for method, path in (
        ("POST", "/v1/templates"),
        ("POST", f"/v1/templates/{name}/versions"),
        ("DELETE", f"/v1/templates/{name}"),
        ("POST", "/v1/layouts"),
    ):
        response = await client.request(method, path, json={}, headers=bearer(reader))
        assert_problem(response, 403, "forbidden")


async def test_a_version_pins_its_layout_version_and_an_unknown_layout_is_422(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    admin, name, brand = bearer(tenant[1]), alias(), f"brand-{uuid.uuid4().hex[:6]}"
    layout = await created(
        client, admin, "/v1/layouts", {"alias": brand, "name": "Brand", "version": LAYOUT}
    )
    assert (layout["latest_version"], layout["latest"]["html"]) == (1, LAYOUT["html"])
    assert_problem(
        await client.post("/v1/layouts", json={"alias": brand, "version": LAYOUT}, headers=admin),
        409,
        "layout_exists",
    )
    newer = {"html": "<div>{{ content }}</div>", "text": "{{ content }}\n--\nAcme"}
    added = await created(client, admin, f"/v1/layouts/{brand}/versions", newer)
    assert added["version"] == 2

    await created(client, admin, "/v1/templates", {"alias": name})
    latest = await created(
        client, admin, f"/v1/templates/{name}/versions", version(layout={"alias": brand})
    )
    assert (latest["layout_alias"], latest["layout_version"]) == (brand, 2)
    pinned = version(layout={"alias": brand, "version": 1})
    assert (await created(client, admin, f"/v1/templates/{name}/versions", pinned))[
        "layout_version"
    ] == 1
    for wrong in ({"alias": brand, "version": 9}, {"alias": "nope"}):
        response = await client.post(
            f"/v1/templates/{name}/versions", json=version(layout=wrong), headers=admin
        )
        problem = assert_problem(response, 422, "unknown_layout")
        assert problem["errors"][0]["pointer"] == "/layout"
    other = await client.post(
        "/v1/templates",
        json={"alias": alias(), "version": version(layout={"alias": "nope"})},
        headers=admin,
    )
    assert assert_problem(other, 422, "unknown_layout")["errors"][0]["pointer"] == (
        "/version/layout"
    )
    stranger = bearer((await other_tenant(pool))[1])
    assert_problem(await client.get(f"/v1/layouts/{brand}", headers=stranger), 404, "not_found")

    versions = (await client.get(f"/v1/layouts/{brand}/versions", headers=admin)).json()
    assert [v["version"] for v in versions["versions"]] == [2, 1]
    first = (await client.get(f"/v1/layouts/{brand}/versions/1", headers=admin)).json()
    assert first["html"] == LAYOUT["html"]
    archived = await client.delete(f"/v1/layouts/{brand}", headers=admin)
    assert archived.json()["archived_at"] is not None
    refused = await client.post(
        f"/v1/templates/{name}/versions", json=version(layout={"alias": brand}), headers=admin
    )
    assert_problem(refused, 422, "unknown_layout")
    still = (await client.get(f"/v1/templates/{name}/versions/1", headers=admin)).json()
    assert still["layout_version"] == 2, "versions that pinned it keep it"
    assert (await client.get("/v1/layouts", headers=admin)).json() == {"layouts": []}


def ends_in(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def template_with_two_versions(
    client: httpx.AsyncClient, admin: dict[str, str], category: str
) -> str:
    name = alias()
    body = {"alias": name, "category": category, "version": version(activate=True)}
    await created(client, admin, "/v1/templates", body)
    await created(client, admin, f"/v1/templates/{name}/versions", version("Variant"))
    return name


async def test_an_experiment_on_security_mail_is_refused_unless_overridden(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    admin = bearer(tenant[1])
    name = await template_with_two_versions(client, admin, "otp")
    path = f"/v1/templates/{name}/experiments"
    trial = {"variant_version": 2, "percent": 10, "ends_at": ends_in(7)}
    refused = await client.post(path, json=trial, headers=admin)
    problem = assert_problem(refused, 422, "experiment_not_allowed")
    assert problem["errors"][0]["pointer"] == "/override_critical"
    assert (await client.get(path, headers=admin)).json() == {"experiments": []}
    allowed = await created(client, admin, path, trial | {"override_critical": True})
    assert (allowed["percent"], allowed["override_critical"]) == (10.0, True)


@pytest.mark.parametrize(
    ("change", "code", "pointer"),
    [
        ({"variant_version": 1}, "invalid_experiment", "/variant_version"),
        ({"variant_version": 3}, "invalid_experiment", "/variant_version"),
        ({"percent": 60}, "invalid_request", "/percent"),
        ({"percent": 0}, "invalid_request", "/percent"),
        ({"ends_at": ends_in(91)}, "invalid_experiment", "/ends_at"),
        ({"ends_at": ends_in(-1)}, "invalid_experiment", "/ends_at"),
        ({"ends_at": "2030-01-01T00:00:00"}, "invalid_request", "/ends_at"),
        ({"starts_at": ends_in(100), "ends_at": ends_in(120)}, "invalid_experiment", "/starts_at"),
        (
            {"starts_at": ends_in(5), "ends_at": ends_in(2)},
            "invalid_experiment",
            "/ends_at",
        ),
    ],
)
async def test_an_experiment_is_a_small_cohort_for_a_while_on_another_version(
    client: httpx.AsyncClient,
    tenant: tuple[Tenant, str],
    change: dict[str, Any],
    code: str,
    pointer: str,
) -> None:
    admin = bearer(tenant[1])
    name = await template_with_two_versions(client, admin, "onboarding")
    trial = {"variant_version": 2, "percent": 10, "ends_at": ends_in(7)} | change
    response = await client.post(f"/v1/templates/{name}/experiments", json=trial, headers=admin)
    assert assert_problem(response, 422, code)["errors"][0]["pointer"] == pointer


def event(tenant_id: str, template: str, variant: int, state: MessageState) -> EventData:
    return EventData.model_validate(
        {
            "message_id": str(uuid.uuid4()),
            "tenant_id": tenant_id,
            "recipient": "someone@example.org",
            "stream": Stream.TRANSACTIONAL,
            "lane": Lane.NORMAL,
            "category": "onboarding",
            "template": template,
            "template_version": variant,
            "trace_id": uuid.uuid4().hex,
            "service": "sender",
        }
    )


async def aggregate(pool: asyncpg.Pool, tenant_id: str, name: str, story: list[Any]) -> None:
    """Count events as the analytics service does: (version, state, latency ms or None)."""
    tally = Tally()
    now = datetime.now(UTC)
    for variant, state, latency in story:
        tally.add(delivery_event(state, event(tenant_id, name, variant, state), now), latency)
    async with pool.acquire() as connection:
        await analytics_store.add_tally(connection, tally)


async def test_one_experiment_at_a_time_with_its_outcomes_per_version(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    admin = bearer(tenant[1])
    name = await template_with_two_versions(client, admin, "onboarding")
    path = f"/v1/templates/{name}/experiments"
    trial = {"variant_version": 2, "percent": 10, "ends_at": ends_in(7)}
    experiment = await created(client, admin, path, trial)
    assert_problem(await client.post(path, json=trial, headers=admin), 409, "experiment_running")

    accepted, delivered, bounced = (
        MessageState.ACCEPTED,
        MessageState.DELIVERED,
        MessageState.BOUNCED,
    )
    await aggregate(
        pool,
        tenant[0].id,
        name,
        [(1, accepted, None)] * 9
        + [(1, delivered, 200.0)] * 8
        + [(1, bounced, None)]
        + [(2, accepted, None)] * 2
        + [(2, delivered, 5000.0)] * 2
        + [(3, delivered, 1.0)],
    )
    report = await client.get(f"{path}/{experiment['id']}", headers=admin)
    assert report.status_code == 200, report.text
    shown = report.json()
    assert shown["running"] is True and shown["experiment"]["id"] == experiment["id"]
    control, variant = shown["outcomes"]
    assert (control["version"], control["role"], variant["version"], variant["role"]) == (
        1,
        "control",
        2,
        "variant",
    )
    assert control["counts"] == {
        "accepted": 9,
        "delivered": 8,
        "bounced": 1,
        "complained": 0,
        "deferred": 0,
        "failed": 0,
    }
    assert (variant["counts"]["accepted"], variant["counts"]["delivered"]) == (2, 2)
    assert control["delivered_p50_ms"] < 1000 < variant["delivered_p50_ms"]
    assert variant["delivered_p99_ms"] >= variant["delivered_p50_ms"]

    stranger = bearer((await other_tenant(pool))[1])
    assert_problem(
        await client.get(f"{path}/{experiment['id']}", headers=stranger), 404, "not_found"
    )
    assert_problem(await client.get(f"{path}/not-an-id", headers=admin), 404, "not_found")
    stopped = await client.post(f"{path}/{experiment['id']}/stop", headers=admin)
    assert stopped.json()["stopped_at"] is not None
    assert (await client.get(f"{path}/{experiment['id']}", headers=admin)).json()[
        "running"
    ] is False
    await created(client, admin, path, trial | {"percent": 5})
    listed = (await client.get(path, headers=admin)).json()["experiments"]
    assert len(listed) == 2


async def test_the_cli_manages_templates_layouts_and_experiments(
    settings: Settings, tenant: tuple[Tenant, str], tmp_path: Path
) -> None:
    tenant_id, name, brand = tenant[0].id, alias(), f"brand-{uuid.uuid4().hex[:6]}"

    async def cli(*args: str) -> Any:
        result = await sendarix(settings, *args[:2], "--tenant", tenant_id, *args[2:])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    wrapper = tmp_path / "layout.html"
    wrapper.write_text(LAYOUT["html"], encoding="utf-8")
    layout = await cli("layout", "create", brand, "--html-file", str(wrapper))
    assert (layout["alias"], layout["version"]) == (brand, 1)
    assert (await cli("layout", "version", brand, "--html-file", str(wrapper)))["version"] == 2
    assert [v["version"] for v in (await cli("layout", "show", brand))["versions"]] == [2, 1]
    assert [x["alias"] for x in await cli("layout", "list")] == [brand]

    unparsable = await sendarix(
        settings, "template", "create", "--tenant", tenant_id, "--name", name,
        "--subject", "Code {{ code", "--text-file", str(wrapper),
    )  # fmt: skip
    assert unparsable.exit_code == 1 and "invalid_template" in unparsable.output
    head = await cli("template", "create", "--name", name, "--category", "otp")
    assert (head["category"], head["latest_version"]) == ("otp", 0)
    first = tmp_path / "v1.json"
    first.write_text(json.dumps(version(layout={"alias": brand, "version": 1})), encoding="utf-8")
    saved = await cli("template", "version", name, str(first), "--activate")
    assert (saved["version"], saved["layout_version"]) == (1, 1)
    second = tmp_path / "v2.json"
    second.write_text(json.dumps(version("Variant")), encoding="utf-8")
    assert (await cli("template", "version", name, str(second)))["version"] == 2
    assert (await cli("template", "activate", name, "2"))["active_version"] == 2
    assert (await cli("template", "activate", name, "1"))["active_version"] == 1
    shown = await cli("template", "show", name)
    assert (shown["active_version"], [v["version"] for v in shown["versions"]]) == (1, [2, 1])
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"name": "Zé"}), encoding="utf-8")
    rendered = await cli("template", "render", name, "--locale", "pt-BR", "--data-file", str(data))
    assert (rendered["subject"], rendered["layout_version"]) == ("Olá Zé", 1)
    assert "<footer>Acme</footer>" in rendered["html"] and rendered["warnings"] == []
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(version("Hi {{ name")), encoding="utf-8")
    refused = await sendarix(
        settings, "template", "version", "--tenant", tenant_id, name, str(broken)
    )
    assert refused.exit_code == 1
    assert "/contents/en/subject: en subject, line 1" in refused.output
    one = await cli("template", "show", name, "--version", "2")
    assert one["contents"]["en"]["subject"] == "Variant"
    assert [t["alias"] for t in await cli("template", "list")] == [name]

    trial = ["--variant", "2", "--percent", "10", "--ends-at", ends_in(3)]
    refused = await sendarix(settings, "experiment", "start", "--tenant", tenant_id, name, *trial)
    assert refused.exit_code == 1 and "experiment_not_allowed" in refused.output
    started = await cli("experiment", "start", name, *trial, "--override-critical")
    assert started["override_critical"] is True
    assert [e["id"] for e in await cli("experiment", "list", name)] == [started["id"]]
    report = await cli("experiment", "show", name, started["id"])
    assert [o["role"] for o in report["outcomes"]] == ["control", "variant"]
    assert (await cli("experiment", "stop", name, started["id"]))["stopped_at"] is not None

    assert (await cli("template", "archive", name))["archived_at"] is not None
    assert await cli("template", "list") == []
    assert (await cli("template", "archive", name, "--restore"))["archived_at"] is None
    missing = await sendarix(settings, "template", "activate", "--tenant", tenant_id, name, "9")
    assert missing.exit_code == 1 and "no version 9" in missing.output


async def test_a_version_that_does_not_check_is_422_with_each_issue_located(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    admin, name = bearer(tenant[1]), alias()
    await created(client, admin, "/v1/templates", {"alias": name})
    broken = version()
    broken["contents"]["en"]["html"] = "<p>Hello</p>\n<p>{{ name }</p>"
    broken["contents"]["pt-BR"]["subject"] = "Olá {{ nome }}"
    response = await client.post(f"/v1/templates/{name}/versions", json=broken, headers=admin)
    problem = assert_problem(response, 422, "invalid_template")
    syntax, undeclared = problem["issues"]
    assert (syntax["code"], syntax["locale"], syntax["part"]) == ("syntax_error", "en", "html")
    assert (syntax["line"], syntax["column"], syntax["pointer"]) == (2, 7, "/contents/en/html")
    assert (undeclared["code"], undeclared["pointer"]) == (
        "undeclared_variable",
        "/contents/pt-BR/subject",
    )
    assert problem["errors"][0] == {
        "pointer": "/contents/en/html",
        "detail": "en html, line 2, column 7: unexpected '}'",
    }
    versions = (await client.get(f"/v1/templates/{name}/versions", headers=admin)).json()
    assert versions["versions"] == [], "nothing saved"

    first = await client.post(
        "/v1/templates", json={"alias": alias(), "version": broken}, headers=admin
    )
    problem = assert_problem(first, 422, "invalid_template")
    assert problem["errors"][0]["pointer"] == "/version/contents/en/html"

    doubtful = version(variables=[{"name": "name"}, {"name": "spare", "required": False}])
    saved = await created(client, admin, f"/v1/templates/{name}/versions", doubtful)
    assert [(w["code"], w["severity"]) for w in saved["warnings"]] == [
        ("unused_variable", "warning")
    ]


async def test_a_layout_without_a_slot_or_that_does_not_parse_is_422(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    admin, brand = bearer(tenant[1]), f"brand-{uuid.uuid4().hex[:6]}"
    bad = {"html": "<div>{% if %}</div>", "text": "no slot"}
    response = await client.post(
        "/v1/layouts", json={"alias": brand, "version": bad}, headers=admin
    )
    problem = assert_problem(response, 422, "invalid_layout")
    assert [(i["code"], i["pointer"], i["line"]) for i in problem["issues"]] == [
        ("syntax_error", "/version/html", 1),
        ("missing_layout_slot", "/version/text", None),
    ]
    assert (await client.get("/v1/layouts", headers=admin)).json() == {"layouts": []}
    await created(client, admin, "/v1/layouts", {"alias": brand, "version": LAYOUT})
    again = await client.post(f"/v1/layouts/{brand}/versions", json=bad, headers=admin)
    assert assert_problem(again, 422, "invalid_layout")["errors"][0]["pointer"] == "/html"


async def test_the_preview_renders_a_version_in_its_layout_and_locale_with_warnings(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    admin, name, brand = bearer(tenant[1]), alias(), f"brand-{uuid.uuid4().hex[:6]}"
    await created(client, admin, "/v1/layouts", {"alias": brand, "version": LAYOUT})
    first = version(
        layout={"alias": brand},
        variables=[
            {"name": "name", "example": "Jane"},
            {"name": "nick", "required": False, "default": "pal"},
        ],
    )
    first["contents"]["en"]["html"] = (
        '<p>Hello {{ name }} ({{ nick }})</p><img src="http://cdn.example/logo.png">'
    )
    await created(client, admin, "/v1/templates", {"alias": name, "version": first})
    path = f"/v1/templates/{name}/render"

    latest = await client.post(path, headers=bearer(tenant[1]))
    assert latest.status_code == 200, latest.text
    shown = latest.json()
    assert shown["subject"] == "Hi Jane" and shown["locale"] == "en"
    assert shown["html"].startswith("<html><body><p>Hello Jane (pal)</p>")
    assert "<footer>Acme</footer>" in shown["html"] and "Hello Jane" in shown["text"]
    assert (shown["template_version"], shown["layout_version"]) == (1, 1)
    assert {w["code"] for w in shown["warnings"]} == {
        "missing_optional_data",
        "image_without_alt",
        "insecure_link",
    }

    portuguese = await client.post(
        path, json={"locale": "pt-br", "data": {"name": "<b>Zé</b>", "nick": "z"}}, headers=admin
    )
    assert portuguese.status_code == 200, portuguese.text
    assert portuguese.json()["subject"] == "Olá <b>Zé</b>"
    assert "<p>Olá &lt;b&gt;Zé&lt;/b&gt;</p>" in portuguese.json()["html"]
    assert (portuguese.json()["locale"], portuguese.json()["warnings"]) == ("pt-BR", [])
    french = await client.post(path, json={"locale": "fr-CA"}, headers=admin)
    assert french.json()["locale"] == "en"
    assert [w["code"] for w in french.json()["warnings"]] == [
        "missing_optional_data",
        "image_without_alt",
        "insecure_link",
        "locale_fallback",
    ]

    escape = version("{{ name.__class__.__mro__ }}")
    await created(client, admin, f"/v1/templates/{name}/versions", escape)
    failed = await client.post(path, json={"version": 2}, headers=admin)
    problem = assert_problem(failed, 422, "render_failed")
    assert "SecurityError" in problem["detail"] and "unsafe" in problem["detail"]
    assert_problem(await client.post(path, json={"version": 9}, headers=admin), 404, "not_found")
    bad = await client.post(path, json={"locale": "not a locale"}, headers=admin)
    assert assert_problem(bad, 422, "invalid_request")["errors"][0]["pointer"] == "/locale"
    stranger = bearer((await other_tenant(pool))[1])
    assert_problem(await client.post(path, headers=stranger), 404, "not_found")
    empty = alias()
    await created(client, admin, "/v1/templates", {"alias": empty})
    nothing = await client.post(f"/v1/templates/{empty}/render", headers=admin)
    assert_problem(nothing, 404, "not_found")
