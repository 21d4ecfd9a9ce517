"""``sendarix``: the admin CLI. Tenants, API keys, templates, suppressions, rules, held messages,
analytics and alerts, a message's story.

An operator's tool: it reads and writes the database directly (settings from ``SENDARIX_*``,
defaulting to the ``make run`` stack) through the same ``libs`` functions as the HTTP API,
publishes released held messages to the broker, and asks Jaeger's query API for a message's
spans.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TextIO, TypeVar

import asyncpg
import click
import httpx
from pydantic import BaseModel, ValidationError

from libs import held as held_store
from libs import (
    ip_pools,
    keys,
    queue_controls,
    queue_views,
    retry_windows,
    routes,
    rules,
    template_experiments,
    template_store,
)
from libs.alerts import AlertStatus, list_alerts
from libs.analytics import DIMENSIONS, Granularity
from libs.analytics_report import AnalyticsQuery, read_report, refusal
from libs.broker import ensure_topics, make_broker
from libs.database import apply_migrations, open_pool
from libs.domain_verification import verify_domain
from libs.domain_views import DomainView
from libs.feedback_report import parse_feedback, report_json
from libs.ip_pools import NewPool, RoutingRefused
from libs.message_log import LoggedMessage, read_message
from libs.relay_presets import PRESETS
from libs.retry_windows import RetryWindowFields, RetryWindows
from libs.routes import NewRoute
from libs.sending_domains import (
    InvalidDomain,
    SendingDomain,
    add_domain,
    normalise_domain,
    sending_domain,
)
from libs.settings import Settings
from libs.suppression_csv import CsvRefused, GuardedBody, export_lines, header_line
from libs.suppression_views import AddressCheck, SuppressionView
from libs.suppressions import (
    ADDRESS_SHAPE,
    MAX_ADDRESS_CHARS,
    Cursor,
    ImportFault,
    Removal,
    Suppression,
    SuppressionQuery,
    SuppressionReason,
    active_suppressions,
    add_suppressions,
    each_suppression,
    import_suppressions,
    list_suppressions,
    normalise_address,
    remove_suppressions,
    stage_csv,
)
from libs.template_engine import Preview
from libs.template_experiments import ExperimentFields
from libs.template_store import (
    HeadPatch,
    LayoutFields,
    LayoutVersionFields,
    PreviewFields,
    TemplateFields,
    TemplateRefused,
    VersionFields,
    located,
)
from libs.templates import (
    DEFAULT_LOCALE,
    LocaleContent,
    TemplateVersion,
    fetch_template,
    fetch_version,
    put_template,
    upsert_template,
)
from libs.tenants import create_tenant, set_limits, set_retention
from libs.trace_waterfall import WaterfallRow, fetch_trace, trace_ui_url, waterfall
from libs.webhook_endpoints import (
    DEFAULT_OVERLAP,
    Endpoint,
    EndpointFields,
    EndpointPatch,
    EndpointRefused,
    create_endpoint,
    delete_endpoint,
    get_endpoint,
    list_endpoints,
    rotate_secret,
    update_endpoint,
)
from libs.webhook_queue import ReplayRefused, list_attempts, replay
from libs.webhook_targets import TargetGuard, TargetRefused
from schemas.common import Lane, Problem, Stream
from schemas.events import EVENT_TYPE_PREFIX, DeliveryEvent
from schemas.pipeline import AuthMethod, RouteKind, TlsMode

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
FieldsT = TypeVar("FieldsT", bound=BaseModel)
HeldFilterT = TypeVar("HeldFilterT", bound=held_store.HeldFilter)
ScopeT = TypeVar("ScopeT", bound=queue_controls.Scope)
CLI_SERVICE = "cli"


def _print_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def _with_pool(settings: Settings, work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    async def run() -> T:
        pool = await open_pool(settings, size=2)
        try:
            return await work(pool)
        finally:
            await pool.close()

    return asyncio.run(run())


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a {what} id (a UUID)") from None


@click.group()
@click.pass_context
def main(context: click.Context) -> None:
    """Administer a Sendarix platform (settings from SENDARIX_* variables)."""
    context.obj = Settings()


pass_settings = click.make_pass_decorator(Settings)


def send_rate_options(whose: str) -> Callable[[F], F]:
    """``--rate`` and ``--burst``: a send rate limit (messages/s, and at once)."""

    def decorate(command: F) -> F:
        burst = click.option(
            "--burst", type=click.IntRange(min=1), help=f"{whose} send burst (messages at once)."
        )
        rate = click.option(
            "--rate",
            type=click.FloatRange(min=0, max=1e6, min_open=True),
            help=f"{whose} send rate (messages/s).",
        )
        return rate(burst(command))

    return decorate


@main.group()
def tenant() -> None:
    """Tenants: who may send, from which domains."""


@tenant.command("create")
@click.option("--name", required=True, help="The tenant's name.")
@click.option("--domain", "domains", multiple=True, required=True, help="A sending domain.")
@click.option("--webhook-url", help="Where its delivery events are posted.")
@pass_settings
def tenant_create(
    settings: Settings, name: str, domains: tuple[str, ...], webhook_url: str | None
) -> None:
    """Create a tenant and print its id and API key (shown this once) as JSON.

    Its domains get their DKIM keys (``sendarix domain show`` lists the records to publish);
    in dev mode (``SENDARIX_DEV_MODE``, on in ``make run``) they may send before verification.
    """
    for domain in domains:
        _domain_name(domain)
    guard = TargetGuard(settings)

    async def create(pool: asyncpg.Pool) -> dict[str, Any]:
        if webhook_url:
            await _endpoint_checked(guard.check(webhook_url))
        created, api_key = await create_tenant(
            pool, name, list(domains), dev_mode=settings.dev_mode
        )
        output: dict[str, Any] = {
            "tenant_id": created.id,
            "name": created.name,
            "domains": list(created.domains),
            "api_key": api_key,
        }
        if webhook_url:
            fields = EndpointFields(url=webhook_url)
            endpoint = await _endpoint_checked(create_endpoint(pool, guard, created.id, fields))
            output |= {"webhook_url": endpoint.url, "webhook_secret": endpoint.secret}
        return output

    click.echo(json.dumps(_with_pool(settings, create)))


def _domain_name(text: str) -> str:
    try:
        return normalise_domain(text)
    except InvalidDomain as error:
        raise click.BadParameter(f"{text!r}: {error}") from None


@tenant.command("limits")
@click.option("--tenant", "tenant_id", required=True, help="The tenant's id.")
@click.option(
    "--priority-ceiling",
    type=click.Choice([lane.value for lane in Lane if lane is not Lane.CRITICAL]),
    help="The most urgent lane its requests may ask for with `priority` (never critical).",
)
@click.option("--critical-rate", type=click.FloatRange(min=0), help="Critical-lane messages/s.")
@click.option("--critical-burst", type=click.IntRange(min=0), help="Critical-lane burst.")
@send_rate_options("Its")
@pass_settings
def tenant_limits(
    settings: Settings,
    tenant_id: str,
    priority_ceiling: str | None,
    critical_rate: float | None,
    critical_burst: int | None,
    rate: float | None,
    burst: int | None,
) -> None:
    """Set how far a tenant may raise priority, how fast it may use the critical lane and how
    fast it may send (per ingest process; beyond it the gateway answers 429).

    Beyond its critical rate, a tenant's security mail still goes, in the high lane. Ingest
    applies a change within its tenant cache's lifetime (30 s).
    """
    _uuid(tenant_id, "tenant")
    updated = _with_pool(
        settings,
        lambda pool: set_limits(
            pool,
            tenant_id,
            Lane(priority_ceiling) if priority_ceiling else None,
            critical_rate,
            critical_burst,
            rate,
            burst,
        ),
    )
    if updated is None:
        raise click.ClickException(f"no tenant {tenant_id}")
    _print_json(
        {
            "tenant_id": updated.id,
            "priority_ceiling": updated.priority_ceiling.value,
            "critical_per_second": updated.critical_per_second,
            "critical_burst": updated.critical_burst,
            "rate_per_second": updated.rate_per_second,
            "rate_burst": updated.rate_burst,
        }
    )


@tenant.command("retention")
@click.option("--tenant", "tenant_id", required=True, help="The tenant's id.")
@click.option("--days", type=click.IntRange(min=1), required=True, help="Days a message is kept.")
@pass_settings
def tenant_retention(settings: Settings, tenant_id: str, days: int) -> None:
    """Keep a tenant's messages, their events and sent bytes DAYS days (30 unless set).

    Ingest deletes older ones in batches, every few minutes.
    """
    _uuid(tenant_id, "tenant")
    kept = _with_pool(settings, lambda pool: set_retention(pool, tenant_id, days))
    if kept is None:
        raise click.ClickException(f"no tenant {tenant_id}")
    _print_json({"tenant_id": tenant_id, "retention_days": kept})


def _key_change(settings: Settings, work: Callable[[asyncpg.Pool], Awaitable[T | None]]) -> T:
    """Run a change of a key; a refusal (last admin key, unusable key) or no such key exits 1."""
    try:
        done = _with_pool(settings, work)
    except keys.KeyConflict as error:
        raise click.ClickException(f"{error.code}: {error.detail}") from None
    if done is None:
        raise click.ClickException("no such key for this tenant")
    return done


@main.group()
def key() -> None:
    """A tenant's API keys (the same operations as the /v1/keys admin API)."""


tenant_option = click.option("--tenant", "tenant_id", required=True, help="The tenant's id.")


def with_options(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    """A decorator that adds ``options`` to a command, in order."""

    def decorate(command: F) -> F:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@key.command("create")
@tenant_option
@click.option("--name", required=True, help="What the key is for.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice([s.value for s in keys.Scope]),
    help="A scope (repeat; default: send).",
)
@click.option("--domain", "domains", multiple=True, help="Restrict to a sending domain (repeat).")
@click.option(
    "--stream",
    "streams",
    multiple=True,
    type=click.Choice([s.value for s in Stream]),
    help="Restrict to a stream (repeat).",
)
@send_rate_options("Its own")
@pass_settings
def key_create(
    settings: Settings,
    tenant_id: str,
    name: str,
    scopes: tuple[str, ...],
    domains: tuple[str, ...],
    streams: tuple[str, ...],
    rate: float | None,
    burst: int | None,
) -> None:
    """Create a key and print it with its secret (shown this once) as JSON."""
    _uuid(tenant_id, "tenant")
    wanted = keys.KeySettings(
        name=name,
        scopes=frozenset(keys.Scope(s) for s in scopes or ("send",)),
        domains=keys.normalised_domains(domains) if domains else None,
        streams=tuple(Stream(s) for s in dict.fromkeys(streams)) if streams else None,
        rate_per_second=rate,
        rate_burst=burst,
    )
    created, secret = _with_pool(settings, lambda pool: keys.insert_key(pool, tenant_id, wanted))
    _print_json(keys.described(created) | {"secret": secret})


@key.command("list")
@tenant_option
@pass_settings
def key_list(settings: Settings, tenant_id: str) -> None:
    """Print a tenant's keys (never their secrets) as JSON."""
    _uuid(tenant_id, "tenant")
    found = _with_pool(settings, lambda pool: keys.list_keys(pool, tenant_id))
    _print_json([keys.described(k) for k in found])


@key.command("revoke")
@tenant_option
@click.argument("key_id")
@pass_settings
def key_revoke(settings: Settings, tenant_id: str, key_id: str) -> None:
    """Revoke a key: every ingest process refuses it within seconds."""
    _uuid(tenant_id, "tenant")
    revoked = _key_change(settings, lambda pool: keys.revoke_key(pool, tenant_id, key_id))
    _print_json(keys.described(revoked))


@key.command("rotate")
@tenant_option
@click.argument("key_id")
@click.option(
    "--overlap-seconds",
    type=click.IntRange(min=0),
    default=int(keys.DEFAULT_ROTATION_OVERLAP.total_seconds()),
    show_default=True,
    help="How long the old secret keeps working.",
)
@pass_settings
def key_rotate(settings: Settings, tenant_id: str, key_id: str, overlap_seconds: int) -> None:
    """Replace a key by a new one with the same settings; print it, its secret and the old key."""
    _uuid(tenant_id, "tenant")
    overlap = timedelta(seconds=overlap_seconds)
    new, secret, old = _key_change(
        settings, lambda pool: keys.rotate_key(pool, tenant_id, key_id, overlap)
    )
    _print_json({"key": keys.described(new) | {"secret": secret}, "previous": keys.described(old)})


def _found(settings: Settings, message_id: str) -> LoggedMessage:
    _uuid(message_id, "message")
    found = _with_pool(settings, lambda pool: read_message(pool, message_id))
    if found is None:
        raise click.ClickException(f"no message {message_id}")
    return found


def timeline_line(event: DeliveryEvent) -> str:
    """One event on one line: time, type, service, attempt, SMTP reply or problem."""
    data = event.data
    parts = [
        event.time.isoformat(timespec="milliseconds"),
        f"{event.type.removeprefix(EVENT_TYPE_PREFIX):<12}",
        f"{data.service:<16}",
    ]
    if data.attempt is not None:
        parts.append(f"attempt {data.attempt}")
    if data.smtp is not None:
        reply = " ".join(str(p) for p in (data.smtp.code, data.smtp.enhanced_status) if p)
        parts.append(f"{reply} {data.smtp.text}".strip())
    if data.problem is not None:
        parts.append(f"{data.problem.code}: {data.problem.detail}")
    if data.rule is not None:
        described = f" ({data.rule.description})" if data.rule.description else ""
        parts.append(f"rule {data.rule.id} {data.rule.action}{described}")
    if data.next_attempt_at is not None:
        parts.append(f"next attempt {data.next_attempt_at.isoformat(timespec='seconds')}")
    return "  ".join(parts).rstrip()


@main.group()
def message() -> None:
    """Messages: where one is and what happened to it."""


@message.command("show")
@click.argument("message_id")
@click.option("--json", "as_json", is_flag=True, help="Print the message and events as JSON.")
@pass_settings
def message_show(settings: Settings, message_id: str, as_json: bool) -> None:
    """Print a message's status and its timeline, one event a line."""
    row, events = _found(settings, message_id)
    if as_json:
        described = {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in row.items()}
        _print_json(described | {"events": [e.model_dump(mode="json") for e in events]})
        return
    click.echo(f"message  {row['id']}")
    click.echo(f"status   {row['status']}")
    click.echo(f"to       {row['recipient']}  (from {row['sender']})")
    click.echo(f"lane     {row['lane']}  stream {row['stream']}  category {row['category']}")
    if row["template"] is not None:
        click.echo(f"template {_rendered_from(row)}")
    click.echo(f"trace    {row['trace_id']}")
    click.echo("timeline")
    for event in events:
        click.echo("  " + timeline_line(event))


def _rendered_from(row: asyncpg.Record) -> str:
    """``welcome v3 (layout v2, pt-BR)``: what a message was rendered from, as far as known."""
    version = f" v{row['template_version']}" if row["template_version"] is not None else ""
    details = [f"layout v{row['layout_version']}"] if row["layout_version"] is not None else []
    details += [row["locale"]] if row["locale"] is not None else []
    return f"{row['template']}{version}" + (f" ({', '.join(details)})" if details else "")


def span_line(row: WaterfallRow) -> str:
    """One span of a trace as an indented line: service, operation, duration, what it noted."""
    line = f"{'  ' * row.depth}{row.service}  {row.name}  {row.duration_ms:.1f} ms"
    if row.error:
        line += "  ERROR"
    if row.notes:
        line += "  [" + ", ".join(f"{label}: {value}" for label, value in row.notes) + "]"
    return line


async def _trace_rows(settings: Settings, trace_id: str) -> list[WaterfallRow]:
    async with httpx.AsyncClient() as http:
        found = await fetch_trace(http, settings, trace_id)
    return [] if found is None else waterfall(found)


@main.command("trace")
@click.argument("message_id")
@pass_settings
def trace_command(settings: Settings, message_id: str) -> None:
    """Print a message's trace id, its page in the tracing UI and, when Jaeger has its spans,
    its span tree."""
    row, _ = _found(settings, message_id)
    trace_id = row["trace_id"]
    click.echo(f"trace    {trace_id}")
    click.echo(f"ui       {trace_ui_url(settings, trace_id)}")
    rows = asyncio.run(_trace_rows(settings, trace_id))
    if not rows:
        click.echo(
            f"(no spans of this trace from Jaeger at {settings.jaeger_ui_url}:"
            " not yet, or it did not answer)"
        )
        return
    click.echo("spans")
    for span in rows:
        click.echo("  " + span_line(span))


@main.group()
def db() -> None:
    """The database."""


@db.command("migrate")
@pass_settings
def db_migrate(settings: Settings) -> None:
    """Apply the migrations not applied yet."""
    applied = asyncio.run(apply_migrations(settings.database_url))
    click.echo(f"applied: {', '.join(applied)}" if applied else "up to date")


@main.group()
def topics() -> None:
    """The Kafka topics."""


@topics.command("create")
@pass_settings
def topics_create(settings: Settings) -> None:
    """Create every topic of the catalogue that does not exist yet."""
    created = asyncio.run(ensure_topics(settings))
    click.echo(f"created: {', '.join(created)}" if created else "all topics exist")


@main.group()
def template() -> None:
    """Templates (the same operations as /v1/templates): immutable versions, one active."""


def _read(path: Path | None) -> str | None:
    return path.read_text(encoding="utf-8") if path is not None else None


def _fields(model: type[FieldsT], given: object) -> FieldsT:
    """``given`` (a parsed JSON file or options) as ``model``, or a usage error."""
    try:
        return model.model_validate(given)
    except ValidationError as error:
        raise click.UsageError(str(error)) from None


def _json_file(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise click.BadParameter(f"{path}: not JSON ({error})") from None


async def _stored(what: str, change: Awaitable[T | None]) -> T:
    """What a store call returned: a refusal or nothing found as the CLI's error."""
    try:
        result = await change
    except TemplateRefused as refused:
        lines = [f"{refused.code}: {refused.detail}"]
        lines += [f"  {pointer}: {located(issue)}" for pointer, issue in refused.issues]
        raise click.ClickException("\n".join(lines)) from None
    if result is None:
        raise click.ClickException(f"no {what}")
    return result


def _print_model(value: BaseModel | Sequence[BaseModel]) -> None:
    if isinstance(value, BaseModel):
        _print_json(value.model_dump(mode="json"))
    else:
        _print_json([item.model_dump(mode="json") for item in value])


json_file = click.Path(exists=True, dir_okay=False, path_type=Path)
text_file = click.Path(exists=True, dir_okay=False, path_type=Path)
archived_option = click.option("--archived", is_flag=True, help="List the archived ones.")


@template.command("create")
@tenant_option
@click.option("--name", required=True, help="The template's alias, as requests give it.")
@click.option("--category", help="The kind of mail (otp: no experiments).")
@click.option("--subject", help="The subject (Jinja2): store a new active version with it.")
@click.option("--html-file", type=text_file)
@click.option("--text-file", type=text_file)
@click.option("--locale", default=DEFAULT_LOCALE, show_default=True)
@pass_settings
def template_create(
    settings: Settings,
    tenant_id: str,
    name: str,
    category: str | None,
    subject: str | None,
    html_file: Path | None,
    text_file: Path | None,
    locale: str,
) -> None:
    """Create a template; with --subject, store a new active version of it whose LOCALE has
    these sources (checked; its other locales those of the active version) and print it as
    JSON."""
    _uuid(tenant_id, "tenant")
    html, text = _read(html_file), _read(text_file)
    if subject is None:
        if html is not None or text is not None:
            raise click.UsageError("give --subject with --html-file or --text-file")
        fields = _fields(TemplateFields, {"alias": name, "category": category})
        head, _ = _with_pool(
            settings,
            lambda pool: _stored(
                f"new template {name!r}: it exists",
                template_store.create_template(pool, tenant_id, fields),
            ),
        )
        _print_model(head)
        return
    sources = _fields(LocaleContent, {"subject": subject, "html": html, "text": text})
    checked = _fields(VersionFields, {"contents": {locale: sources}})

    async def put(pool: asyncpg.Pool) -> TemplateVersion:
        await _stored("layout", template_store.check_new_version(pool, tenant_id, checked))
        await upsert_template(pool, tenant_id, name, category=category)
        return await put_template(pool, tenant_id, name, subject, html, text, locale)

    stored = _with_pool(settings, put)
    _print_json({"tenant_id": tenant_id, "name": name, "locale": locale, "version": stored.version})


@template.command("show")
@tenant_option
@click.argument("alias")
@click.option("--version", type=click.IntRange(min=1), help="One version (default: the head).")
@pass_settings
def template_show(settings: Settings, tenant_id: str, alias: str, version: int | None) -> None:
    """Print a template's head and its versions, or one version, as JSON."""
    _uuid(tenant_id, "tenant")

    async def show(pool: asyncpg.Pool) -> dict[str, Any]:
        if version is not None:
            one = await _stored(
                f"version {version} of {alias!r}", fetch_version(pool, tenant_id, alias, version)
            )
            return one.model_dump(mode="json")
        head = await _stored(f"template {alias!r}", fetch_template(pool, tenant_id, alias))
        versions = await template_store.list_versions(pool, tenant_id, alias) or []
        return head.model_dump(mode="json") | {
            "versions": [v.model_dump(mode="json") for v in versions]
        }

    _print_json(_with_pool(settings, show))


@template.command("version")
@tenant_option
@click.argument("alias")
@click.argument("file", type=json_file)
@click.option("--activate", is_flag=True, help="Make it the active version at once.")
@pass_settings
def template_version(
    settings: Settings, tenant_id: str, alias: str, file: Path, activate: bool
) -> None:
    """Add a version from FILE (JSON as POST /v1/templates/{alias}/versions: contents,
    variables, layout, ...) and print it."""
    _uuid(tenant_id, "tenant")
    given = _json_file(file)
    fields = _fields(
        VersionFields, given | {"activate": True} if activate and isinstance(given, dict) else given
    )

    async def add(pool: asyncpg.Pool) -> TemplateVersion:
        checked = await _stored("layout", template_store.check_new_version(pool, tenant_id, fields))
        return await _stored(
            f"template {alias!r}", template_store.save_version(pool, tenant_id, alias, checked)
        )

    _print_model(_with_pool(settings, add))


@template.command("activate")
@tenant_option
@click.argument("alias")
@click.argument("version", type=click.IntRange(min=1))
@pass_settings
def template_activate(settings: Settings, tenant_id: str, alias: str, version: int) -> None:
    """Make VERSION the active one (an older one: a roll back); services apply it within
    their template cache time."""
    _uuid(tenant_id, "tenant")
    activated = _with_pool(
        settings,
        lambda pool: _stored(
            f"version {version} of {alias!r}",
            template_store.activate_version(pool, tenant_id, alias, version),
        ),
    )
    _print_model(activated)


@template.command("archive")
@tenant_option
@click.argument("alias")
@click.option("--restore", is_flag=True, help="Restore an archived template instead.")
@pass_settings
def template_archive(settings: Settings, tenant_id: str, alias: str, restore: bool) -> None:
    """Archive a template (sends naming it are refused; versions kept), or restore it."""
    _uuid(tenant_id, "tenant")
    patch = HeadPatch(archived=not restore)
    _print_model(
        _with_pool(
            settings,
            lambda pool: _stored(
                f"template {alias!r}", template_store.patch_template(pool, tenant_id, alias, patch)
            ),
        )
    )


@template.command("render")
@tenant_option
@click.argument("alias")
@click.option("--version", type=click.IntRange(min=1), help="Default: the active one.")
@click.option("--locale", help="The reader's locale (the fallback chain applies).")
@click.option("--data-file", type=json_file, help="JSON data (default: the examples).")
@pass_settings
def template_render(
    settings: Settings,
    tenant_id: str,
    alias: str,
    version: int | None,
    locale: str | None,
    data_file: Path | None,
) -> None:
    """Preview a version (as POST /v1/templates/{alias}/render): print subject, html, text,
    the locale rendered and the warnings as JSON."""
    _uuid(tenant_id, "tenant")
    given: dict[str, object] = {"version": version, "locale": locale}
    if data_file is not None:
        given["data"] = _json_file(data_file)
    fields = _fields(PreviewFields, {k: v for k, v in given.items() if v is not None})

    async def render(pool: asyncpg.Pool) -> Preview | Problem:
        what = f"version of {alias!r} to render"
        found: Preview | Problem = await _stored(
            what, template_store.preview_template(pool, tenant_id, alias, fields)
        )
        return found

    rendered = _with_pool(settings, render)
    if isinstance(rendered, Problem):
        raise click.ClickException(f"{rendered.code}: {rendered.detail}")
    _print_json(
        rendered.content.model_dump(mode="json")
        | {"warnings": [warning.model_dump(mode="json") for warning in rendered.warnings]}
    )


@main.group()
def layout() -> None:
    """Layouts (as /v1/layouts): a tenant's shared wrappers, versioned; a template version
    pins one."""


def _layout_version_fields(
    html_file: Path | None, text_file: Path | None, note: str | None
) -> LayoutVersionFields:
    return _fields(
        LayoutVersionFields, {"html": _read(html_file), "text": _read(text_file), "note": note}
    )


layout_version_options = [
    click.option("--html-file", type=text_file, help="The html wrapper, with {{ content }}."),
    click.option("--text-file", type=text_file, help="The text wrapper, with {{ content }}."),
    click.option("--note", help="What changed."),
]


@layout.command("create")
@tenant_option
@click.argument("alias")
@click.option("--name", help="Its name (default: the alias).")
@with_options(layout_version_options)
@pass_settings
def layout_create(
    settings: Settings,
    tenant_id: str,
    alias: str,
    name: str | None,
    html_file: Path | None,
    text_file: Path | None,
    note: str | None,
) -> None:
    """Create a layout with its first version and print that version."""
    _uuid(tenant_id, "tenant")
    version = _layout_version_fields(html_file, text_file, note)
    fields = _fields(LayoutFields, {"alias": alias, "name": name, "version": version})
    created = _with_pool(
        settings,
        lambda pool: _stored(
            f"new layout {alias!r}: it exists",
            template_store.create_layout(pool, tenant_id, fields),
        ),
    )
    _print_model(created)


@layout.command("version")
@tenant_option
@click.argument("alias")
@with_options(layout_version_options)
@pass_settings
def layout_version(
    settings: Settings,
    tenant_id: str,
    alias: str,
    html_file: Path | None,
    text_file: Path | None,
    note: str | None,
) -> None:
    """Add a version to a layout and print it."""
    _uuid(tenant_id, "tenant")
    fields = _layout_version_fields(html_file, text_file, note)
    added = _with_pool(
        settings,
        lambda pool: _stored(
            f"layout {alias!r}", template_store.add_layout_version(pool, tenant_id, alias, fields)
        ),
    )
    _print_model(added)


def _add_list_command(
    group: click.Group,
    what: str,
    lister: Callable[[asyncpg.Pool, str, bool], Awaitable[Sequence[BaseModel]]],
) -> None:
    """``GROUP list --tenant T [--archived]``: print the tenant's WHAT as JSON."""

    @group.command("list", help=f"Print the tenant's {what} as JSON.")
    @tenant_option
    @archived_option
    @pass_settings
    def listing(settings: Settings, tenant_id: str, archived: bool) -> None:
        _uuid(tenant_id, "tenant")
        _print_model(list(_with_pool(settings, lambda pool: lister(pool, tenant_id, archived))))


_add_list_command(template, "templates", template_store.list_templates)
_add_list_command(layout, "layouts", template_store.list_layouts)


@layout.command("show")
@tenant_option
@click.argument("alias")
@pass_settings
def layout_show(settings: Settings, tenant_id: str, alias: str) -> None:
    """Print a layout's head and its versions as JSON."""
    _uuid(tenant_id, "tenant")

    async def show(pool: asyncpg.Pool) -> dict[str, Any]:
        head = await _stored(
            f"layout {alias!r}", template_store.fetch_layout(pool, tenant_id, alias)
        )
        versions = await template_store.list_layout_versions(pool, tenant_id, alias) or []
        return head.model_dump(mode="json") | {
            "versions": [v.model_dump(mode="json") for v in versions]
        }

    _print_json(_with_pool(settings, show))


@main.group()
def experiment() -> None:
    """Experiments (as /v1/templates/{alias}/experiments): a small cohort of a template's
    recipients gets another version for a while."""


@experiment.command("start")
@tenant_option
@click.argument("alias")
@click.option("--variant", "variant_version", type=int, required=True, help="The version tried.")
@click.option("--percent", type=float, required=True, help="Of recipients (0 < p <= 50).")
@click.option("--starts-at", help="RFC 3339 (default: now).")
@click.option("--ends-at", required=True, help="RFC 3339 (at most 90 days after the start).")
@click.option(
    "--override-critical", is_flag=True, help="Run it on a security (critical-lane) template."
)
@pass_settings
def experiment_start(settings: Settings, /, tenant_id: str, alias: str, **given: Any) -> None:
    """Start an experiment on ALIAS and print it."""
    _uuid(tenant_id, "tenant")
    fields = _fields(ExperimentFields, {k: v for k, v in given.items() if v is not None})
    started = _with_pool(
        settings,
        lambda pool: _stored(
            f"template {alias!r}",
            template_experiments.start_experiment(pool, tenant_id, alias, fields),
        ),
    )
    _print_model(started)


@experiment.command("list")
@tenant_option
@click.argument("alias")
@pass_settings
def experiment_list(settings: Settings, tenant_id: str, alias: str) -> None:
    """Print a template's experiments, latest start first."""
    _uuid(tenant_id, "tenant")
    found = _with_pool(
        settings,
        lambda pool: _stored(
            f"template {alias!r}", template_experiments.list_experiments(pool, tenant_id, alias)
        ),
    )
    _print_model(list(found))


def _add_experiment_command(
    name: str,
    what: str,
    action: Callable[[asyncpg.Pool, str, str, str], Awaitable[BaseModel | None]],
) -> None:
    """``experiment NAME --tenant T ALIAS ID``: WHAT, printed as JSON."""

    @experiment.command(name, help=what)
    @tenant_option
    @click.argument("alias")
    @click.argument("experiment_id")
    @pass_settings
    def command(settings: Settings, tenant_id: str, alias: str, experiment_id: str) -> None:
        _uuid(tenant_id, "tenant")
        found = _with_pool(
            settings,
            lambda pool: _stored(
                f"experiment {experiment_id}", action(pool, tenant_id, alias, experiment_id)
            ),
        )
        _print_model(found)


_add_experiment_command(
    "show",
    "Print an experiment with the outcomes of its control and its variant.",
    template_experiments.experiment_report,
)
_add_experiment_command(
    "stop",
    "Stop an experiment: everyone gets the active version again.",
    template_experiments.stop_experiment,
)


@main.group()
def suppression() -> None:
    """Addresses a tenant does not send to, per stream and reason (as /v1/suppressions)."""


stream_choice = click.Choice([s.value for s in Stream])
reason_choice = click.Choice([r.value for r in SuppressionReason])
CLI_AUTHOR = "cli"
EXPORT_CHUNK_BYTES = 1 << 20


def _moment(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an RFC 3339 date-time") from None
    if moment.tzinfo is None:
        raise click.BadParameter(f"{value!r}: give the offset (Z or ±hh:mm)")
    return moment


def _views(found: list[Suppression]) -> list[dict[str, Any]]:
    return [SuppressionView.of(s).model_dump(mode="json") for s in found]


@suppression.command("list")
@tenant_option
@click.option("--address", help="One address, exactly.")
@click.option("--prefix", help="Addresses starting with this.")
@click.option("--stream", type=stream_choice)
@click.option("--reason", type=reason_choice)
@click.option("--since", help="Created at or after (RFC 3339).")
@click.option("--until", help="Created before (RFC 3339).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--cursor", help="next_cursor of the previous page.")
@pass_settings
def suppression_list(
    settings: Settings,
    tenant_id: str,
    address: str | None,
    prefix: str | None,
    stream: str | None,
    reason: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    cursor: str | None,
) -> None:
    """Print a page of a tenant's suppressions in force, in address order, as JSON."""
    _uuid(tenant_id, "tenant")
    try:
        after = Cursor.decode(cursor) if cursor else None
    except ValueError:
        raise click.BadParameter("not a cursor this command printed") from None
    query = SuppressionQuery(
        address=address,
        prefix=prefix,
        stream=Stream(stream) if stream else None,
        reason=SuppressionReason(reason) if reason else None,
        since=_moment(since),
        until=_moment(until),
        after=after,
        limit=limit,
    )
    page = _with_pool(settings, lambda pool: list_suppressions(pool, tenant_id, query))
    _print_json(
        {
            "suppressions": _views(page.suppressions),
            "next_cursor": page.next_cursor.encode() if page.next_cursor else None,
        }
    )


@suppression.command("check")
@tenant_option
@click.argument("address")
@pass_settings
def suppression_check(settings: Settings, tenant_id: str, address: str) -> None:
    """Print whether mail to ADDRESS goes, per stream."""
    _uuid(tenant_id, "tenant")
    key = (tenant_id, normalise_address(address))
    found = _with_pool(settings, lambda pool: active_suppressions(pool, [key]))
    _print_json(AddressCheck.of(key[1], found.get(key, [])).model_dump(mode="json"))


@suppression.command("add")
@tenant_option
@click.option("--stream", type=stream_choice, help="Only this stream (default: every stream).")
@click.option("--reason", type=reason_choice, default="manual", show_default=True)
@click.option("--expires-at", help="Until when (RFC 3339; default: for good).")
@click.option("--note", help="Who asked and why.")
@click.argument("addresses", nargs=-1, required=True)
@pass_settings
def suppression_add(
    settings: Settings,
    tenant_id: str,
    stream: str | None,
    reason: str,
    expires_at: str | None,
    note: str | None,
    addresses: tuple[str, ...],
) -> None:
    """Stop sending to ADDRESSES for a tenant; print the suppressions written."""
    _uuid(tenant_id, "tenant")
    wanted = [
        Suppression(
            tenant_id,
            _suppressible(address),
            each,
            SuppressionReason(reason),
            note=note,
            created_by=CLI_AUTHOR,
            expires_at=_moment(expires_at),
        )
        for address in addresses
        for each in ([Stream(stream)] if stream else list(Stream))
    ]
    _print_json(_views(_with_pool(settings, lambda pool: add_suppressions(pool, wanted))))


def _suppressible(address: str) -> str:
    normalised = normalise_address(address)
    if not re.match(ADDRESS_SHAPE, normalised) or len(normalised) > MAX_ADDRESS_CHARS:
        raise click.BadParameter(f"{address!r} is not an email address")
    return normalised


@suppression.command("remove")
@tenant_option
@click.option("--stream", type=stream_choice, help="Only this stream.")
@click.option("--reason", type=reason_choice, help="Only this reason.")
@click.option("--note", required=True, help="Why (kept with the removal).")
@click.argument("address")
@pass_settings
def suppression_remove(
    settings: Settings,
    tenant_id: str,
    stream: str | None,
    reason: str | None,
    note: str,
    address: str,
) -> None:
    """Resume sending to ADDRESS (complaints included: this is an operator's tool)."""
    _uuid(tenant_id, "tenant")

    async def remove(pool: asyncpg.Pool) -> Removal:
        async with pool.acquire() as connection:
            return await remove_suppressions(
                connection,
                tenant_id,
                address,
                Stream(stream) if stream else None,
                SuppressionReason(reason) if reason else None,
                CLI_AUTHOR,
                note,
                may_remove_complaints=True,
            )

    removal = _with_pool(settings, remove)
    if not removal.removed:
        raise click.ClickException(f"{normalise_address(address)} is not suppressed")
    _print_json(_views(removal.removed))


@suppression.command("export")
@tenant_option
@click.option("--out", type=click.File("w", encoding="utf-8"), default="-", show_default=True)
@pass_settings
def suppression_export(settings: Settings, tenant_id: str, out: TextIO) -> None:
    """Write every suppression of a tenant in force as CSV (the API's export)."""
    _uuid(tenant_id, "tenant")

    async def export(pool: asyncpg.Pool) -> None:
        out.write(header_line())
        async with pool.acquire() as connection:
            async for chunk in each_suppression(connection, tenant_id, SuppressionQuery()):
                out.write(export_lines(chunk))

    _with_pool(settings, export)


@suppression.command("import")
@tenant_option
@click.argument("source", type=click.File("rb"))
@pass_settings
def suppression_import(settings: Settings, tenant_id: str, source: BinaryIO) -> None:
    """Suppress every address of a CSV file (reason manual; a header line first: address and
    any of stream, expires_at, note — an export imports back), all or none."""
    _uuid(tenant_id, "tenant")

    async def chunks() -> AsyncIterator[bytes]:
        while chunk := source.read(EXPORT_CHUNK_BYTES):
            yield chunk

    async def load(pool: asyncpg.Pool) -> int | list[ImportFault]:
        body = GuardedBody(chunks())
        async with pool.acquire() as connection:
            columns = await body.header()
            stage = stage_csv(body.rows(), columns)
            return await import_suppressions(connection, tenant_id, CLI_AUTHOR, stage)

    try:
        written = _with_pool(settings, load)
    except CsvRefused as refused:
        raise click.ClickException(f"{refused.code}: {refused.detail}") from None
    except asyncpg.DataError as error:
        raise click.ClickException(f"invalid_csv: {error}") from None
    if isinstance(written, list):
        faults = "; ".join(f"row {f.line} {f.field}: {f.detail}" for f in written)
        raise click.ClickException(f"nothing imported: {faults}")
    _print_json({"written": written})


@main.group()
def webhook() -> None:
    """A tenant's webhook endpoints: where its events are posted, and how that went."""


async def _endpoint_checked(change: Awaitable[T]) -> T:
    """What an endpoint change returned; a refusal as the CLI's error."""
    try:
        return await change
    except (EndpointRefused, TargetRefused) as refused:
        raise click.ClickException(f"{refused.code}: {refused.detail}") from None


def _print_endpoint(found: Endpoint | None, endpoint_id: str, with_secret: bool = False) -> None:
    if found is None:
        raise click.ClickException(f"no webhook endpoint {endpoint_id}")
    shown = found.model_dump(mode="json")
    _print_json(shown | {"secret": found.secret} if with_secret else shown)


tenant_option = click.option("--tenant", "tenant_id", required=True, help="The tenant's id.")
filter_options = [
    click.option("--description", help="What the endpoint is for."),
    click.option(
        "--event-type",
        "event_types",
        multiple=True,
        help="A CloudEvent type to post (all if none).",
    ),
    click.option(
        "--stream",
        "streams",
        multiple=True,
        type=click.Choice([s.value for s in Stream]),
        help="A stream whose events are posted (all if none).",
    ),
]


with_filters = with_options(filter_options)


@webhook.command("create")
@tenant_option
@click.argument("url")
@with_filters
@pass_settings
def webhook_create(
    settings: Settings,
    tenant_id: str,
    url: str,
    description: str | None,
    event_types: tuple[str, ...],
    streams: tuple[str, ...],
) -> None:
    """Post a tenant's events to URL; print the endpoint and its signing secret (shown once)."""
    _uuid(tenant_id, "tenant")
    fields = EndpointFields.model_validate(
        {
            "url": url,
            "description": description or "",
            "event_types": event_types,
            "streams": streams,
        }
    )
    guard = TargetGuard(settings)
    created = _with_pool(
        settings,
        lambda pool: _endpoint_checked(create_endpoint(pool, guard, tenant_id, fields)),
    )
    _print_endpoint(created, "", with_secret=True)


webhook.add_command(webhook_create, "set")


@webhook.command("list")
@tenant_option
@pass_settings
def webhook_list(settings: Settings, tenant_id: str) -> None:
    """Print the tenant's endpoints."""
    _uuid(tenant_id, "tenant")
    found = _with_pool(settings, lambda pool: list_endpoints(pool, tenant_id))
    _print_json([endpoint.model_dump(mode="json") for endpoint in found])


@webhook.command("show")
@tenant_option
@click.argument("endpoint_id")
@pass_settings
def webhook_show(settings: Settings, tenant_id: str, endpoint_id: str) -> None:
    """Print one endpoint (why it was disabled, if it was)."""
    found = _with_pool(settings, lambda pool: get_endpoint(pool, tenant_id, endpoint_id))
    _print_endpoint(found, endpoint_id)


@webhook.command("update")
@tenant_option
@click.argument("endpoint_id")
@click.option("--url", help="Where to post.")
@with_filters
@click.option("--enable/--disable", "enabled", default=None, help="Re-enable or disable it.")
@pass_settings
def webhook_update(
    settings: Settings,
    tenant_id: str,
    endpoint_id: str,
    url: str | None,
    description: str | None,
    event_types: tuple[str, ...],
    streams: tuple[str, ...],
    enabled: bool | None,
) -> None:
    """Change an endpoint; ``--enable`` re-enables one the webhook service disabled."""
    given = {
        "url": url,
        "description": description,
        "event_types": list(event_types) or None,
        "streams": list(streams) or None,
        "enabled": enabled,
    }
    patch = EndpointPatch.model_validate({k: v for k, v in given.items() if v is not None})
    guard = TargetGuard(settings)
    found = _with_pool(
        settings,
        lambda pool: _endpoint_checked(update_endpoint(pool, guard, tenant_id, endpoint_id, patch)),
    )
    _print_endpoint(found, endpoint_id)


@webhook.command("delete")
@tenant_option
@click.argument("endpoint_id")
@pass_settings
def webhook_delete(settings: Settings, tenant_id: str, endpoint_id: str) -> None:
    """Remove an endpoint with its queue and attempt log."""
    found = _with_pool(settings, lambda pool: delete_endpoint(pool, tenant_id, endpoint_id))
    _print_endpoint(found, endpoint_id)


@webhook.command("rotate")
@tenant_option
@click.argument("endpoint_id")
@click.option(
    "--overlap-seconds",
    type=click.IntRange(min=0),
    default=int(DEFAULT_OVERLAP.total_seconds()),
    show_default=True,
    help="How long the old secret keeps signing posts too.",
)
@pass_settings
def webhook_rotate(
    settings: Settings, tenant_id: str, endpoint_id: str, overlap_seconds: int
) -> None:
    """Give an endpoint a new secret (printed once); the old one signs too for the overlap."""
    overlap = timedelta(seconds=overlap_seconds)
    found = _with_pool(
        settings,
        lambda pool: _endpoint_checked(rotate_secret(pool, tenant_id, endpoint_id, overlap)),
    )
    _print_endpoint(found, endpoint_id, with_secret=True)


@webhook.command("attempts")
@tenant_option
@click.argument("endpoint_id")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--before", type=int, help="A cursor: attempts older than this one.")
@pass_settings
def webhook_attempts(
    settings: Settings, tenant_id: str, endpoint_id: str, limit: int, before: int | None
) -> None:
    """Print the endpoint's latest posts, newest first."""
    found = _with_pool(
        settings, lambda pool: list_attempts(pool, tenant_id, endpoint_id, before, limit)
    )
    if found is None:
        raise click.ClickException(f"no webhook endpoint {endpoint_id}")
    _print_json([attempt.model_dump(mode="json") for attempt in found])


@webhook.command("replay")
@tenant_option
@click.argument("endpoint_id")
@click.option("--event-id", help="One event to post again.")
@click.option("--since", type=click.DateTime(), help="Events from this time (UTC) …")
@click.option("--until", type=click.DateTime(), help="… to this one (default: now).")
@pass_settings
def webhook_replay(
    settings: Settings,
    tenant_id: str,
    endpoint_id: str,
    event_id: str | None,
    since: datetime | None,
    until: datetime | None,
) -> None:
    """Post the tenant's events again to an endpoint: one, or those of a time range."""
    if (event_id is None) == (since is None):
        raise click.UsageError("give --event-id or --since")

    async def queue(pool: asyncpg.Pool) -> int:
        found = await get_endpoint(pool, tenant_id, endpoint_id)
        if found is None:
            raise click.ClickException(f"no webhook endpoint {endpoint_id}")
        start = since.replace(tzinfo=UTC) if since else None
        end = (until.replace(tzinfo=UTC) if until else datetime.now(UTC)) if since else None
        try:
            return await replay(pool, found, event_id, start, end)
        except ReplayRefused as refused:
            raise click.ClickException(f"replay_too_large: {refused}") from None

    _print_json({"queued": _with_pool(settings, queue)})


@main.group()
def domain() -> None:
    """Sending domains: their DKIM keys, the DNS records to publish, their verification."""


def _print_domain(settings: Settings, found: SendingDomain) -> None:
    _print_json(DomainView.of(found, settings).model_dump(mode="json"))


def _existing_domain(settings: Settings, tenant_id: str, name: str) -> SendingDomain:
    _uuid(tenant_id, "tenant")
    found = _with_pool(settings, lambda pool: sending_domain(pool, tenant_id, name))
    if found is None:
        raise click.ClickException(f"tenant {tenant_id} has no domain {name}")
    return found


@domain.command("add")
@click.option("--tenant", "tenant_id", required=True, help="The tenant's id.")
@click.argument("name")
@pass_settings
def domain_add(settings: Settings, tenant_id: str, name: str) -> None:
    """Add domain NAME with a new DKIM key; print it with the DNS records to publish."""
    _uuid(tenant_id, "tenant")
    normalised = _domain_name(name)
    added = _with_pool(
        settings, lambda pool: add_domain(pool, tenant_id, normalised, settings.dev_mode)
    )
    if added is None:
        raise click.ClickException(f"tenant {tenant_id} has {normalised} already")
    _print_domain(settings, added)


@domain.command("show")
@click.option("--tenant", "tenant_id", required=True, help="The tenant's id.")
@click.argument("name")
@pass_settings
def domain_show(settings: Settings, tenant_id: str, name: str) -> None:
    """Print domain NAME: its status, the records to publish and what the last check found."""
    _print_domain(settings, _existing_domain(settings, tenant_id, _domain_name(name)))


@domain.command("verify")
@click.option("--tenant", "tenant_id", required=True, help="The tenant's id.")
@click.argument("name")
@pass_settings
def domain_verify(settings: Settings, tenant_id: str, name: str) -> None:
    """Check domain NAME's DNS records now (SENDARIX_DNS_NAMESERVERS) and print the verdict."""
    found = _existing_domain(settings, tenant_id, _domain_name(name))
    checked = _with_pool(settings, lambda pool: verify_domain(pool, settings, found))
    if checked is None:
        raise click.ClickException(f"domain {found.domain} was removed meanwhile")
    _print_domain(settings, checked)


@main.group()
def route() -> None:
    """A tenant's routes (the same operations as the /v1/routes API): mx, relay (with TLS,
    AUTH and provider presets) or sandbox, each with an optional fallback and pool."""


def _routing_refused(error: RoutingRefused) -> click.ClickException:
    return click.ClickException(f"{error.code}: {error.detail}")


def _routing(
    settings: Settings, work: Callable[[asyncpg.Pool], Awaitable[T | None]], what: str
) -> T:
    """What ``work`` returned; a refusal or a missing ``what`` ends the command."""
    try:
        found = _with_pool(settings, work)
    except RoutingRefused as error:
        raise _routing_refused(error) from None
    if found is None:
        raise click.ClickException(f"no {what}")
    return found


def _model(model: type[FieldsT], values: dict[str, Any]) -> FieldsT:
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise click.UsageError(str(error)) from None


route_options = with_options(
    [
        click.option("--kind", type=click.Choice([k.value for k in RouteKind])),
        click.option("--host", help="relay: the server."),
        click.option("--port", type=click.IntRange(1, 65535)),
        click.option("--tls", type=click.Choice([t.value for t in TlsMode])),
        click.option("--auth", type=click.Choice([a.value for a in AuthMethod])),
        click.option("--username", help="The AUTH user name."),
        click.option("--password-stdin", is_flag=True, help="Read the AUTH password from stdin."),
        click.option("--preset", type=click.Choice(list(PRESETS)), help="A provider's settings."),
        click.option("--fallback", help="The route that takes over when this one cannot."),
        click.option("--pool", "pool_name", help="The IP pool its mail goes out from."),
        click.option("--default/--not-default", "is_default", default=None),
        click.option("--timeout", "timeout_seconds", type=click.FloatRange(1, 600)),
    ]
)


def _route_values(options: dict[str, Any]) -> dict[str, Any]:
    """The route fields the options give (the password read from stdin)."""
    options["pool"] = options.pop("pool_name")
    if options.pop("password_stdin"):
        options["password"] = sys.stdin.readline().rstrip("\r\n")
    return {k: v for k, v in options.items() if v is not None}


@route.command("create")
@tenant_option
@click.argument("name")
@route_options
@pass_settings
def route_create(settings: Settings, /, tenant_id: str, name: str, **options: Any) -> None:
    """Add route NAME (``--preset gmail --username u --password-stdin``) and print it as JSON."""
    fields = _model(NewRoute, _route_values(options) | {"name": name})
    created = _routing(
        settings, lambda pool: routes.create_route(pool, settings, tenant_id, fields), "route"
    )
    _print_model(created)


@route.command("list")
@tenant_option
@pass_settings
def route_list(settings: Settings, tenant_id: str) -> None:
    """Print the routes the tenant's mail can take (built-in ones first) as JSON."""
    _print_model(_with_pool(settings, lambda pool: routes.list_routes(pool, settings, tenant_id)))


@route.command("show")
@tenant_option
@click.argument("name")
@pass_settings
def route_show(settings: Settings, tenant_id: str, name: str) -> None:
    """Print route NAME as JSON (never its password)."""
    found = _routing(
        settings, lambda pool: routes.get_route(pool, settings, tenant_id, name), f"route {name}"
    )
    _print_model(found)


@route.command("update")
@tenant_option
@click.argument("name")
@route_options
@pass_settings
def route_update(settings: Settings, /, tenant_id: str, name: str, **options: Any) -> None:
    """Change the given fields of route NAME and print it as JSON."""
    changes = _route_values(options)
    updated = _routing(
        settings,
        lambda pool: routes.update_route(pool, settings, tenant_id, name, changes),
        f"route {name}",
    )
    _print_model(updated)


@route.command("delete")
@tenant_option
@click.argument("name")
@pass_settings
def route_delete(settings: Settings, tenant_id: str, name: str) -> None:
    """Remove route NAME (refused while another route falls back to it or a rule forces it)."""
    removed = _routing(
        settings, lambda pool: routes.delete_route(pool, tenant_id, name), f"route {name}"
    )
    _print_model(removed)


@route.command("presets")
def route_presets() -> None:
    """Print the relay presets (server, port, TLS, AUTH, the provider's limits) as JSON."""
    _print_model(list(PRESETS.values()))


@main.group("pool")
def ip_pool() -> None:
    """A tenant's IP pools: source addresses with EHLO names, weights and warm-up schedules."""


def _pool_address(text: str) -> dict[str, Any]:
    """``ADDRESS,EHLO[,WEIGHT[,WARMUP_START,WARMUP_DAYS]]`` as a pool address's fields."""
    names = ("address", "ehlo", "weight", "warmup_start", "warmup_days")
    parts = [part.strip() for part in text.split(",")]
    if not 2 <= len(parts) <= len(names) or len(parts) == 4:
        raise click.BadParameter(f"{text!r}: ADDRESS,EHLO[,WEIGHT[,WARMUP_START,WARMUP_DAYS]]")
    return dict(zip(names, parts, strict=False))


@ip_pool.command("create")
@tenant_option
@click.argument("name")
@click.option("--address", "addresses", multiple=True, help="ADDRESS,EHLO[,WEIGHT[,START,DAYS]]")
@click.option("--return-path-domain", help="The domain its mail's bounces come back to.")
@pass_settings
def pool_create(
    settings: Settings,
    tenant_id: str,
    name: str,
    addresses: tuple[str, ...],
    return_path_domain: str | None,
) -> None:
    """Add IP pool NAME and print it as JSON."""
    fields = _model(
        NewPool,
        {
            "name": name,
            "addresses": [_pool_address(a) for a in addresses],
            "return_path_domain": return_path_domain,
        },
    )
    created = _routing(settings, lambda pool: ip_pools.create_pool(pool, tenant_id, fields), "pool")
    _print_model(created)


@ip_pool.command("list")
@tenant_option
@pass_settings
def pool_list(settings: Settings, tenant_id: str) -> None:
    """Print the pools the tenant's mail can go out from (built-in ones first) as JSON."""
    _print_model(_with_pool(settings, lambda pool: ip_pools.list_pools(pool, settings, tenant_id)))


@ip_pool.command("show")
@tenant_option
@click.argument("name")
@pass_settings
def pool_show(settings: Settings, tenant_id: str, name: str) -> None:
    """Print IP pool NAME as JSON."""
    found = _routing(
        settings, lambda pool: ip_pools.get_pool(pool, settings, tenant_id, name), f"pool {name}"
    )
    _print_model(found)


@ip_pool.command("delete")
@tenant_option
@click.argument("name")
@pass_settings
def pool_delete(settings: Settings, tenant_id: str, name: str) -> None:
    """Remove IP pool NAME (refused while a route or a rule names it)."""
    removed = _routing(
        settings, lambda pool: ip_pools.delete_pool(pool, tenant_id, name), f"pool {name}"
    )
    _print_model(removed)


@main.group("retry-window")
def retry_window() -> None:
    """How long a tenant's mail of each lane is retried before it fails ``expired``."""


@retry_window.command("show")
@tenant_option
@pass_settings
def retry_window_show(settings: Settings, tenant_id: str) -> None:
    """Print the tenant's window of each lane, in seconds, as JSON."""
    windows = _with_pool(settings, lambda pool: retry_windows.read_windows(pool, tenant_id))
    _print_model(RetryWindows.of(windows))


@retry_window.command("set")
@tenant_option
@click.option("--critical", type=int, help="Seconds (default 900).")
@click.option("--high", type=int, help="Seconds (default 86400).")
@click.option("--normal", type=int, help="Seconds (default 172800).")
@click.option("--bulk", type=int, help="Seconds (default 259200).")
@pass_settings
def retry_window_set(settings: Settings, /, tenant_id: str, **seconds: int | None) -> None:
    """Set the tenant's windows (a lane not given goes back to its default); print them."""
    fields = _model(RetryWindowFields, {k: v for k, v in seconds.items() if v is not None})
    windows = _with_pool(settings, lambda pool: retry_windows.set_windows(pool, tenant_id, fields))
    _print_model(RetryWindows.of(windows))


@main.group()
def rule() -> None:
    """A tenant's rules (the same operations as the /v1/rules API): the first that matches a
    message decides whether it goes, is held or blocked, and in which lane, route or pool."""


def _rule_refused(error: rules.RuleRefused) -> click.ClickException:
    return click.ClickException(f"{error.code}: {error.detail}")


@rule.command("list")
@tenant_option
@pass_settings
def rule_list(settings: Settings, tenant_id: str) -> None:
    """Print a tenant's rules, in the order they are read, as JSON."""
    _uuid(tenant_id, "tenant")
    found = _with_pool(settings, lambda pool: rules.list_rules(pool, tenant_id))
    _print_json([r.model_dump(mode="json") for r in found])


@rule.command("add")
@tenant_option
@click.option("--action", required=True, type=click.Choice([a.value for a in rules.RuleAction]))
@click.option("--description", default="", help="What the rule is for.")
@click.option("--position", type=click.IntRange(min=0), help="Lower is read first.")
@click.option("--disabled", is_flag=True, help="Store it without applying it yet.")
@click.option("--stream", type=click.Choice([s.value for s in Stream]), help="Match a stream.")
@click.option("--category", help="Match a category.")
@click.option("--match-lane", type=click.Choice([x.value for x in Lane]), help="Match a lane.")
@click.option("--sender-domain", help="Match example.com, or *.example.com (subdomains).")
@click.option("--recipient-domain", help="Match example.org, or *.example.org (subdomains).")
@click.option("--tag", help="Match a tag.")
@click.option("--metadata", "metadata", multiple=True, help="Match KEY=VALUE (repeat).")
@click.option("--lane", type=click.Choice([x.value for x in Lane]), help="force_lane: the lane.")
@click.option("--route", help="force_route: a route of the tenant, or simulator, default-relay.")
@click.option(
    "--pool", "pool_name", help="force_pool: a pool of the tenant, or transactional, bulk."
)
@click.option("--hold-seconds", type=int, help="hold: how long (default 72 h).")
@pass_settings
def rule_add(settings: Settings, /, tenant_id: str, **options: Any) -> None:
    """Add a rule (after the tenant's others unless --position) and print it as JSON."""
    _uuid(tenant_id, "tenant")
    metadata = dict(pair.partition("=")[::2] for pair in options.pop("metadata"))
    criteria = {
        "stream": options.pop("stream"),
        "category": options.pop("category"),
        "lane": options.pop("match_lane"),
        "sender_domain": options.pop("sender_domain"),
        "recipient_domain": options.pop("recipient_domain"),
        "tag": options.pop("tag"),
        "metadata": metadata,
    }
    options["pool"] = options.pop("pool_name")
    options["enabled"] = not options.pop("disabled")
    try:
        fields = rules.RuleFields.model_validate(
            {k: v for k, v in options.items() if v is not None}
            | {"match": {k: v for k, v in criteria.items() if v}}
        )
    except ValidationError as error:
        raise click.UsageError(str(error)) from None
    try:
        added = _with_pool(settings, lambda pool: rules.add_rule(pool, tenant_id, fields))
    except rules.RuleRefused as error:
        raise _rule_refused(error) from None
    _print_json(added.model_dump(mode="json"))


@rule.command("remove")
@tenant_option
@click.argument("rule_id")
@pass_settings
def rule_remove(settings: Settings, tenant_id: str, rule_id: str) -> None:
    """Remove a rule (the messages it holds stay held) and print it as JSON."""
    _uuid(tenant_id, "tenant")
    removed = _with_pool(settings, lambda pool: rules.remove_rule(pool, tenant_id, rule_id))
    if removed is None:
        raise click.ClickException(f"tenant {tenant_id} has no rule {rule_id}")
    _print_json(removed.model_dump(mode="json"))


@main.group()
def held() -> None:
    """Messages a rule holds: list, release (they go on to delivery) or cancel them."""


def held_options(command: F) -> F:
    """The tenant and the filter of held messages (rule, recipient domain, time held)."""
    for option in reversed(
        [
            tenant_option,
            click.option("--rule", "rule_id", help="Held by this rule."),
            click.option("--recipient-domain", help="To this domain."),
            click.option("--since", type=click.DateTime(), help="Held at or after (UTC)."),
            click.option("--until", type=click.DateTime(), help="Held before (UTC)."),
        ]
    ):
        command = option(command)
    return command


def _held_filter(model: type[HeldFilterT], **given: Any) -> HeldFilterT:
    for name in ("since", "until"):
        if given.get(name) is not None:
            given[name] = given[name].replace(tzinfo=UTC)
    try:
        return model.model_validate({k: v for k, v in given.items() if v is not None})
    except ValidationError as error:
        raise click.UsageError(str(error)) from None


@held.command("list")
@held_options
@click.option("--limit", type=click.IntRange(1, held_store.MAX_PAGE), default=100)
@pass_settings
def held_list(settings: Settings, /, tenant_id: str, limit: int, **given: Any) -> None:
    """Print the tenant's held messages, longest held first, as JSON."""
    _uuid(tenant_id, "tenant")
    wanted = _held_filter(held_store.HeldFilter, **given)
    page, _ = _with_pool(
        settings, lambda pool: held_store.list_held(pool, tenant_id, wanted, limit=limit)
    )
    _print_json([summary.model_dump(mode="json") for summary in page])


def _settle_held(
    settings: Settings,
    tenant_id: str,
    message_ids: tuple[str, ...],
    to: held_store.HeldState,
    given: dict[str, Any],
) -> None:
    _uuid(tenant_id, "tenant")
    if message_ids:
        given["message_ids"] = list(message_ids)
    selection = _held_filter(held_store.HeldSelection, **given)

    async def settle(pool: asyncpg.Pool) -> int:
        broker = make_broker(CLI_SERVICE, settings)
        await broker.start()
        try:
            return await held_store.settle(
                pool,
                broker.send_confirmed,
                settings.topic_prefix,
                CLI_SERVICE,
                tenant_id,
                selection,
                to,
            )
        finally:
            await broker.stop()

    _print_json({"count": _with_pool(settings, settle)})


@held.command("release")
@held_options
@click.argument("message_ids", nargs=-1)
@pass_settings
def held_release(
    settings: Settings, /, tenant_id: str, message_ids: tuple[str, ...], **given: Any
) -> None:
    """Release the held messages MESSAGE_IDS, or those the filter picks; print how many."""
    _settle_held(settings, tenant_id, message_ids, held_store.HeldState.RELEASED, given)


@held.command("cancel")
@held_options
@click.argument("message_ids", nargs=-1)
@pass_settings
def held_cancel(
    settings: Settings, /, tenant_id: str, message_ids: tuple[str, ...], **given: Any
) -> None:
    """Cancel the held messages MESSAGE_IDS, or those the filter picks; print how many."""
    _settle_held(settings, tenant_id, message_ids, held_store.HeldState.CANCELLED, given)


@main.group()
def feedback() -> None:
    """Bounces, complaints and auto-replies: what the feedback listener reads from them."""


@feedback.command("parse")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
def feedback_parse(file: Path) -> None:
    """Print, as JSON, what one bounce, complaint or auto-reply message (.eml) FILE says:
    its kind and, per recipient, the status, reply code, diagnostic, category and hard/soft."""
    _print_json(report_json(parse_feedback(file.read_bytes())))


@main.command("analytics")
@tenant_option
@click.option("--since", help="From (RFC 3339, floored to its bucket); default: 24 h ago.")
@click.option("--until", help="Until (RFC 3339, exclusive); default: now.")
@click.option(
    "--granularity",
    type=click.Choice([g.value for g in Granularity]),
    default=Granularity.HOUR.value,
    show_default=True,
)
@click.option("--group-by", help=f"Comma-separated: {', '.join(DIMENSIONS)}.")
@click.option("--stream", type=stream_choice)
@click.option("--lane", type=click.Choice([x.value for x in Lane]))
@click.option("--category")
@click.option("--template")
@click.option("--variant", help="The template version.")
@click.option("--recipient-domain")
@pass_settings
def analytics(
    settings: Settings,
    /,
    tenant_id: str,
    since: str | None,
    until: str | None,
    granularity: str,
    group_by: str | None,
    **filters: str | None,
) -> None:
    """Print a tenant's counts, rates and latency per time bucket as JSON (as /v1/analytics)."""
    _uuid(tenant_id, "tenant")
    now = datetime.now(UTC)
    end = _moment(until) or now
    groups = tuple(dict.fromkeys(name for name in (group_by or "").split(",") if name))
    if unknown := set(groups) - set(DIMENSIONS):
        raise click.BadParameter(f"cannot group by {', '.join(sorted(unknown))}")
    query = AnalyticsQuery(
        since=_moment(since) or end - timedelta(hours=24),
        until=end,
        granularity=Granularity(granularity),
        filters={name: value for name, value in filters.items() if value is not None},
        group_by=groups,
    )
    retention = timedelta(hours=settings.analytics_minute_retention_hours)
    if why := refusal(query, now, retention):
        raise click.UsageError(why)
    report = _with_pool(settings, lambda pool: read_report(pool, tenant_id, query))
    _print_json(report.model_dump(mode="json"))


@main.group()
def alerts() -> None:
    """Deliverability alerts (bounce and complaint rates, domains deferring, critical latency)."""


@alerts.command("list")
@tenant_option
@click.option(
    "--status",
    type=click.Choice([s.value for s in AlertStatus]),
    default=AlertStatus.OPEN.value,
    show_default=True,
)
@click.option("--limit", type=click.IntRange(1, 500), default=100, show_default=True)
@pass_settings
def alerts_list(settings: Settings, tenant_id: str, status: str, limit: int) -> None:
    """Print a tenant's alerts, the most recently opened first, as JSON."""
    _uuid(tenant_id, "tenant")
    found = _with_pool(
        settings, lambda pool: list_alerts(pool, tenant_id, AlertStatus(status), limit)
    )
    _print_json([alert.model_dump(mode="json") for alert in found])


@main.group()
def queue() -> None:
    """The queues, live, and the operator's controls over them (as /v1/queues and
    /v1/queue-controls with an operator key): the CLI sees and acts on every tenant."""


def scope_options(*, domain: bool) -> Callable[[F], F]:
    """What a control (or, with ``domain``, an action on waiting mail) covers."""
    options = [
        click.option("--tenant", "tenant_id", help="One tenant (default: every tenant)."),
        click.option("--lane", type=click.Choice([x.value for x in Lane])),
        click.option("--route", help="A route name."),
        click.option("--site", help="A destination site, as the queue view names it."),
    ]
    if domain:
        options += [
            click.option("--domain", help="A recipient domain."),
            click.option("--message", "message_id", help="One message."),
        ]
    return with_options(options)


def _scope(model: type[ScopeT], given: dict[str, Any]) -> ScopeT:
    try:
        return model.model_validate({k: v for k, v in given.items() if v is not None})
    except ValidationError as error:
        raise click.UsageError(str(error)) from None


def _acted(settings: Settings, work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    try:
        return _with_pool(settings, work)
    except queue_controls.ScopeRefused as error:
        raise click.ClickException(f"{error.code}: {error.detail}") from None


def overview_lines(overview: queue_views.QueueOverview) -> list[str]:
    """The queue view as a few lines of text (``queue show --watch``)."""
    lines = [f"{overview.at:%H:%M:%S}  stage          lane      depth  oldest"]
    lines += [
        f"          {s.stage:<14} {s.lane.value:<8} {s.depth:>6}  {s.oldest_seconds:>6.1f}s"
        for s in overview.stages
        if s.depth
    ] or ["          (every stage empty)"]
    for site in overview.sites:
        states = ",".join(f"{lane}:{state}" for lane, state in site.states.items()) or "-"
        waiting = sum(site.waiting.values())
        lines.append(f"site {site.site}: {states} in flight {site.in_flight} waiting {waiting}")
    for control in overview.controls:
        scope = control.scope.model_dump(mode="json", exclude_none=True)
        lines.append(f"{control.kind.value} {control.id} {json.dumps(scope)} {control.reason}")
    return lines


@queue.command("show")
@click.option("--tenant", "tenant_id", help="As this tenant sees it (default: every tenant).")
@click.option("--watch", is_flag=True, help="Redraw as text every second until Ctrl-C.")
@pass_settings
def queue_show(settings: Settings, tenant_id: str | None, watch: bool) -> None:
    """Print stages (depth, oldest wait), sites, scheduled retries by lane and the controls."""

    async def show(pool: asyncpg.Pool) -> None:
        while True:
            overview = await queue_views.read_overview(pool, settings, tenant_id)
            if not watch:
                _print_model(overview)
                return
            click.clear()
            click.echo("\n".join(overview_lines(overview)))
            await asyncio.sleep(1.0)

    _with_pool(settings, show)


@queue.command("sites")
@click.option("--tenant", "tenant_id", help="The sites this tenant's mail waits for.")
@pass_settings
def queue_sites(settings: Settings, tenant_id: str | None) -> None:
    """Print the destination sites: state, in flight, waiting, limits, last replies."""
    _print_model(_with_pool(settings, lambda pool: queue_views.read_sites(pool, tenant_id)))


@queue.command("scheduled")
@click.option("--tenant", "tenant_id", help="One tenant's (default: every tenant's).")
@click.option("--group-by", help="Comma-separated: tenant, domain, lane, site, route.")
@pass_settings
def queue_scheduled(settings: Settings, tenant_id: str | None, group_by: str | None) -> None:
    """Print scheduled retries by group and reason: counts and the next due time."""
    try:
        dimensions = queue_views.grouping(group_by)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    found = _with_pool(
        settings, lambda pool: queue_views.read_scheduled(pool, tenant_id, dimensions)
    )
    _print_model(found)


@queue.command("events")
@click.option("--tenant", "tenant_id", help="One tenant's and the platform's.")
@click.option("--since", help="RFC 3339 (default: any time).")
@click.option("--limit", type=click.IntRange(1, queue_views.MAX_EVENTS), default=100)
@pass_settings
def queue_events(settings: Settings, tenant_id: str | None, since: str | None, limit: int) -> None:
    """Print queue events (controls with who, site shaping changes), newest first."""
    moment = _moment(since)
    found = _with_pool(
        settings, lambda pool: queue_views.read_events(pool, tenant_id, moment, limit)
    )
    _print_model(found)


def _add_control_command(name: str, kind: queue_controls.ControlKind, what: str) -> None:
    @queue.command(name, help=f"{what} Print the control as JSON.")
    @scope_options(domain=False)
    @click.option("--reason", default="", help="Why (shown with the control).")
    @pass_settings
    def add(settings: Settings, /, reason: str, **given: Any) -> None:
        scope = _scope(queue_controls.Scope, given)
        added = _acted(
            settings,
            lambda pool: queue_controls.add_control(pool, kind, scope, reason, CLI_SERVICE),
        )
        _print_model(added)


def _remove_control_command(name: str, kind: queue_controls.ControlKind, what: str) -> None:
    @queue.command(name, help=f"{what} Print the control lifted as JSON.")
    @click.argument("control_id")
    @pass_settings
    def remove(settings: Settings, control_id: str) -> None:
        lifted = _with_pool(
            settings,
            lambda pool: queue_controls.remove_control(pool, control_id, CLI_SERVICE, None, kind),
        )
        if lifted is None:
            raise click.ClickException(f"no {kind.value} control {control_id}")
        _print_model(lifted)


_add_control_command(
    "pause", queue_controls.ControlKind.PAUSE, "Hold the mail the scope covers until resumed."
)
_add_control_command(
    "drain", queue_controls.ControlKind.DRAIN, "Send a route's mail through its fallback."
)
_remove_control_command("resume", queue_controls.ControlKind.PAUSE, "Lift the pause CONTROL_ID.")
_remove_control_command("undrain", queue_controls.ControlKind.DRAIN, "Lift the drain CONTROL_ID.")


@queue.command("retry-now")
@scope_options(domain=True)
@pass_settings
def queue_retry_now(settings: Settings, /, **given: Any) -> None:
    """Make the waiting retries the scope covers due now (a pause still holds its own)."""
    scope = _scope(queue_controls.WaitingScope, given)
    count = _with_pool(settings, lambda pool: queue_controls.retry_now(pool, scope, CLI_SERVICE))
    _print_json({"count": count})


@queue.command("cancel")
@scope_options(domain=True)
@pass_settings
def queue_cancel(settings: Settings, /, **given: Any) -> None:
    """Cancel up to 10,000 messages waiting for a retry that the scope covers (as DELETE
    /v1/messages/{id}); print how many and whether more wait."""
    scope = _scope(queue_controls.WaitingScope, given)

    async def cancel(pool: asyncpg.Pool) -> queue_controls.CancelResult:
        broker = make_broker(CLI_SERVICE, settings)
        await broker.start()
        try:
            return await queue_controls.cancel_waiting(
                pool, broker, settings.topic_prefix, scope, CLI_SERVICE, CLI_SERVICE
            )
        finally:
            await broker.stop()

    _print_model(_acted(settings, cancel))
