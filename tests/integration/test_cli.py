"""The ``sendarix`` CLI against the test database (and Jaeger's query API, when it answers)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner, Result
from opentelemetry import trace

from libs.cli import main
from libs.events import event_data
from libs.settings import Settings
from libs.tenants import Tenant, tenant_by_api_key, tenant_by_id
from libs.tracing import setup_tracing
from libs.webhook_endpoints import list_endpoints
from schemas.common import Problem
from schemas.events import DeliveryEvent, MessageState, delivery_event
from schemas.pipeline import MessageSpec, SmtpReply
from services.ingest.recorder import record_all
from tests.records import message_spec
from tests.support import eventually

pytestmark = pytest.mark.integration


async def sendarix(settings: Settings, *args: str, **env: str) -> Result:
    """Run the CLI in a thread (it runs its own event loop), with the test stack's settings."""
    environment = settings.as_env() | env
    return await asyncio.to_thread(
        CliRunner().invoke, main, list(args), env=environment, catch_exceptions=False
    )


async def record(pool: asyncpg.Pool, event: DeliveryEvent) -> None:
    """Put one event in the message log, as the recorder does with what it reads."""
    await record_all(pool, [(event, event.model_dump_json().encode())])


async def logged_message(pool: asyncpg.Pool, spec: MessageSpec) -> None:
    """A message with a story: accepted, deferred once, delivered on the second attempt."""
    start = datetime.now(UTC)
    story = [
        (MessageState.ACCEPTED, {}),
        (
            MessageState.DEFERRED,
            {
                "attempt": 1,
                "smtp": SmtpReply(code=421, enhanced_status="4.7.0", text="try later"),
                "next_attempt_at": start + timedelta(seconds=30),
            },
        ),
        (MessageState.DELIVERED, {"attempt": 2, "smtp": SmtpReply(code=250, text="OK")}),
    ]
    for step, (state, details) in enumerate(story):
        service = "ingest" if state is MessageState.ACCEPTED else "sender"
        data = event_data(spec, service, **details)
        await record(pool, delivery_event(state, data, start + timedelta(seconds=step)))


async def test_tenant_create_prints_one_json_object_with_a_working_key(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    result = await sendarix(
        settings,
        "tenant",
        "create",
        "--name",
        "acme",
        "--domain",
        "Acme.test",
        "--domain",
        "b.test",
    )
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert set(created) == {"tenant_id", "name", "domains", "api_key"}
    assert created["domains"] == ["acme.test", "b.test"]
    found = await tenant_by_api_key(pool, created["api_key"])
    assert found is not None and found.id == created["tenant_id"]

    hooked = await sendarix(
        settings, "tenant", "create", "--name", "h", "--domain", "h.test", "--webhook-url", "https://h.test/in"
    )  # fmt: skip
    with_hook = json.loads(hooked.output)
    assert with_hook["webhook_url"] == "https://h.test/in"
    assert with_hook["webhook_secret"].startswith("whsec_")
    [endpoint] = await list_endpoints(pool, with_hook["tenant_id"])
    assert endpoint.secret == with_hook["webhook_secret"]


async def test_message_show_prints_the_status_and_timeline(
    settings: Settings, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    spec = message_spec(tenant_id=tenant[0].id)
    await logged_message(pool, spec)

    shown = await sendarix(settings, "message", "show", spec.message_id)
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert "status   delivered" in lines
    timeline = lines[lines.index("timeline") + 1 :]
    assert [line.split()[1] for line in timeline] == ["accepted", "deferred", "delivered"]
    assert "attempt 1" in timeline[1] and "421 4.7.0 try later" in timeline[1]
    assert "next attempt" in timeline[1]
    assert "attempt 2" in timeline[2] and "250 OK" in timeline[2]

    as_json = json.loads(
        (await sendarix(settings, "message", "show", spec.message_id, "--json")).output
    )
    assert (as_json["id"], as_json["status"]) == (spec.message_id, "delivered")
    assert [e["type"] for e in as_json["events"]] == [
        "sendarix.message.accepted",
        "sendarix.message.deferred",
        "sendarix.message.delivered",
    ]

    unknown = await sendarix(settings, "message", "show", str(uuid.uuid4()))
    assert unknown.exit_code == 1 and "no message" in unknown.output
    malformed = await sendarix(settings, "message", "show", "not-an-id")
    assert malformed.exit_code == 2


async def test_message_show_names_what_the_message_was_rendered_from(
    settings: Settings, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    spec = message_spec(tenant_id=tenant[0].id, template="welcome", template_version=3)
    rendered = event_data(spec, "render", layout_version=2, locale="pt")
    await record(pool, delivery_event(MessageState.RENDERED, rendered, datetime.now(UTC)))

    shown = await sendarix(settings, "message", "show", spec.message_id)
    assert "template welcome v3 (layout v2, pt)" in shown.output.splitlines()
    as_json = json.loads(
        (await sendarix(settings, "message", "show", spec.message_id, "--json")).output
    )
    assert (as_json["layout_version"], as_json["locale"]) == (2, "pt")


async def test_message_show_includes_a_problem(
    settings: Settings, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    spec = message_spec(tenant_id=tenant[0].id)
    problem = Problem(code="render_failed", detail="template 'otp' v1: 'code' is undefined")
    failed = event_data(spec, "render", problem=problem)
    await record(pool, delivery_event(MessageState.FAILED, failed, datetime.now(UTC)))
    shown = await sendarix(settings, "message", "show", spec.message_id)
    assert "status   failed" in shown.output
    assert "render_failed: template 'otp' v1: 'code' is undefined" in shown.output


async def test_trace_prints_the_span_tree_when_jaeger_answers(
    settings: Settings, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    provider = setup_tracing("cli-test", settings)  # the process's, if a test set one up first
    service = str(provider.resource.attributes["service.name"])
    tracer = trace.get_tracer("tests", tracer_provider=provider)
    reply: dict[str, str | int] = {
        "smtp.reply_code": 550,
        "smtp.reply": "5.1.1 no such user",
        "sendarix.attempt": 1,
    }
    with tracer.start_as_current_span("POST /v1/messages") as root:
        with tracer.start_as_current_span("sender", attributes=reply):
            pass
        trace_id = format(root.get_span_context().trace_id, "032x")
    provider.force_flush()
    spec = message_spec(tenant_id=tenant[0].id, trace_id=trace_id)
    await logged_message(pool, spec)

    async def with_spans() -> str | None:
        result = await sendarix(settings, "trace", spec.message_id)
        return result.output if "spans" in result.output.splitlines() else None

    output = await eventually(with_spans, timeout=15, every=0.5)
    lines = output.splitlines()
    assert lines[0] == f"trace    {trace_id}"
    assert lines[1] == f"ui       {settings.tracing_ui_url}/zipkin/traces/{trace_id}"
    spans = lines[lines.index("spans") + 1 :]
    assert len(spans) == 2
    assert spans[0].startswith("  ") and "POST /v1/messages" in spans[0]
    assert spans[0].endswith(" ms")
    assert spans[1].startswith(f"    {service}  sender  ")
    assert spans[1].endswith(" ms  [smtp reply: 550 5.1.1 no such user, attempt: 1]")


async def test_trace_still_prints_the_id_and_url_without_jaeger(
    settings: Settings, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    spec = message_spec(tenant_id=tenant[0].id)
    await logged_message(pool, spec)
    offline = "http://127.0.0.1:9"
    result = await sendarix(settings, "trace", spec.message_id, SENDARIX_JAEGER_UI_URL=offline)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:2] == [
        f"trace    {spec.trace_id}",
        f"ui       {settings.tracing_ui_url}/zipkin/traces/{spec.trace_id}",
    ]
    assert "did not answer" in result.output


async def test_admin_commands(
    settings: Settings, pool: asyncpg.Pool, tenant: tuple[Tenant, str], tmp_path: Path
) -> None:
    tenant_id = tenant[0].id
    assert (await sendarix(settings, "db", "migrate")).output.strip() == "up to date"
    assert (await sendarix(settings, "topics", "create")).output.strip() == "all topics exist"

    html = tmp_path / "otp.html"
    html.write_text("<p>{{ code }}</p>", encoding="utf-8")
    name = f"otp-{uuid.uuid4().hex[:6]}"
    versions = []
    for _ in range(2):
        made = await sendarix(
            settings, "template", "create", "--tenant", tenant_id, "--name", name,
            "--subject", "Code {{ code }}", "--html-file", str(html), "--locale", "fr",
        )  # fmt: skip
        assert made.exit_code == 0, made.output
        versions.append(json.loads(made.output)["version"])
    assert versions == [1, 2]

    added = await sendarix(
        settings, "suppression", "add", "--tenant", tenant_id, "Someone@Example.ORG"
    )
    assert {(s["address"], s["reason"]) for s in json.loads(added.output)} == {
        ("someone@example.org", "manual")
    }

    hooked = await sendarix(settings, "webhook", "set", "--tenant", tenant_id, "https://x.test/h")
    secret = json.loads(hooked.output)["secret"]
    assert secret.startswith("whsec_")
    [stored] = await list_endpoints(pool, tenant_id)
    assert (stored.url, stored.secret) == ("https://x.test/h", secret)
    nobody = await sendarix(settings, "webhook", "set", "--tenant", str(uuid.uuid4()), "https://x")
    assert nobody.exit_code == 1


async def test_tenant_limits_change_the_priority_ceiling_critical_and_send_rates(
    settings: Settings, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    account, _ = tenant
    result = await sendarix(
        settings,
        "tenant", "limits", "--tenant", account.id,
        "--priority-ceiling", "normal", "--critical-rate", "5", "--rate", "300",
    )  # fmt: skip
    assert json.loads(result.output) == {
        "tenant_id": account.id,
        "priority_ceiling": "normal",
        "critical_per_second": 5.0,
        "critical_burst": 40,
        "rate_per_second": 300.0,
        "rate_burst": 10000,
    }
    stored = await tenant_by_id(pool, account.id)
    assert stored is not None and stored.priority_ceiling.value == "normal"
    assert stored.rate_per_second == 300.0
    refused = await asyncio.to_thread(
        CliRunner().invoke,
        main,
        ["tenant", "limits", "--tenant", account.id, "--priority-ceiling", "critical"],
        env=settings.as_env(),
    )
    assert refused.exit_code != 0


async def test_tenant_retention_sets_the_days_a_message_is_kept(
    settings: Settings, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    tenant_id = tenant[0].id
    retention = ("tenant", "retention", "--tenant")
    result = await sendarix(settings, *retention, tenant_id, "--days", "7")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"tenant_id": tenant_id, "retention_days": 7}
    kept = await pool.fetchval("SELECT retention_days FROM tenants WHERE id = $1", tenant_id)
    assert kept == 7
    for days in ("0", "many"):
        refused = await sendarix(
            settings, "tenant", "retention", "--tenant", tenant_id, "--days", days
        )
        assert refused.exit_code == 2
    missing = await sendarix(
        settings, "tenant", "retention", "--tenant", str(uuid.uuid4()), "--days", "3"
    )
    assert missing.exit_code == 1 and "no tenant" in missing.output


async def test_suppressions_list_check_add_remove_export_and_import(
    settings: Settings, tenant: tuple[Tenant, str], tmp_path: Path
) -> None:
    tenant_id = tenant[0].id
    prefix = f"cli-{uuid.uuid4().hex[:6]}-"
    first, second = f"{prefix}a@example.org", f"{prefix}b@example.org"

    async def run(*args: str) -> Any:
        result = await sendarix(settings, "suppression", *args)
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    added = await run("add", "--tenant", tenant_id, "--stream", "broadcast", "--note", "n", first)
    assert [(s["stream"], s["created_by"]) for s in added] == [("broadcast", "cli")]
    await run("add", "--tenant", tenant_id, "--reason", "complaint", second)
    checked = await run("check", "--tenant", tenant_id, second.upper())
    assert all(s["suppressed"] and s["critical_mail_goes"] for s in checked["streams"])
    page = await run("list", "--tenant", tenant_id, "--prefix", prefix, "--limit", "2")
    assert len(page["suppressions"]) == 2 and page["next_cursor"]
    cursor = page["next_cursor"]
    rest = await run("list", "--tenant", tenant_id, "--prefix", prefix, "--cursor", cursor)
    assert len(rest["suppressions"]) == 1 and rest["next_cursor"] is None

    exported = tmp_path / "suppressions.csv"
    exporting = await sendarix(
        settings, "suppression", "export", "--tenant", tenant_id, "--out", str(exported)
    )
    assert exporting.exit_code == 0 and exported.read_text().count(prefix) == 3
    removed = await run("remove", "--tenant", tenant_id, "--note", "resolved", second)
    assert len(removed) == 2
    await run("remove", "--tenant", tenant_id, "--note", "wrong", first)
    assert (await run("list", "--tenant", tenant_id, "--prefix", prefix))["suppressions"] == []
    assert await run("import", "--tenant", tenant_id, str(exported)) == {"written": 3}

    bad = tmp_path / "bad.csv"
    bad.write_text("address\nnot-an-address\n")
    refused = await sendarix(settings, "suppression", "import", "--tenant", tenant_id, str(bad))
    assert refused.exit_code == 1 and "row 1 address" in refused.output
    wrong = await sendarix(settings, "suppression", "add", "--tenant", tenant_id, "nobody")
    assert wrong.exit_code == 2


async def test_analytics_and_alerts_print_the_tenants_figures(
    settings: Settings, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    tenant_id = uuid.UUID(tenant[0].id)
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    await pool.execute(
        "INSERT INTO analytics_counts VALUES"
        " ($1, 'day', $2, 'transactional', 'critical', 'otp', '', '', 'gmail.com', 'delivered', '',"
        " 97), ($1, 'day', $2, 'transactional', 'critical', 'otp', '', '', 'gmail.com',"
        " 'bounced', 'invalid_recipient', 3)",
        tenant_id,
        day,
    )
    await pool.execute(
        "INSERT INTO alerts (id, tenant_id, kind, severity, value, threshold, sample,"
        " window_seconds, opened_at, last_value, last_sample, evaluated_at)"
        " VALUES ($1, $2, 'bounce_rate', 'warning', 0.03, 0.02, 100, 3600, now(), 0.03, 100,"
        " now())",
        uuid.uuid4(),
        tenant_id,
    )
    since = (day - timedelta(days=1)).isoformat()

    shown = await sendarix(
        settings, "analytics", "--tenant", str(tenant_id), "--since", since, "--granularity", "day"
    )
    refused = await sendarix(
        settings,
        "analytics",
        "--tenant",
        str(tenant_id),
        "--since",
        (day - timedelta(days=3)).isoformat(),
        "--granularity",
        "minute",
        "--until",
        (day - timedelta(days=2, hours=23)).isoformat(),
    )
    listed = await sendarix(settings, "alerts", "list", "--tenant", str(tenant_id))

    report = json.loads(shown.output)
    assert report["totals"]["counts"]["delivered"] == 97
    assert report["totals"]["rates"]["bounce"] == 0.03
    assert [datetime.fromisoformat(b["start"]) for b in report["buckets"]] == [day]
    assert refused.exit_code == 2 and "minute" in refused.output
    [alert] = json.loads(listed.output)
    assert (alert["kind"], alert["severity"], alert["resolved_at"]) == (
        "bounce_rate",
        "warning",
        None,
    )
