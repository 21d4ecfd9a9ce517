"""What ``make run`` and ``python -m deploy.stack infra`` do: bring a stack up, keep it up, stop it.

Both stay in the foreground. Ctrl-C, SIGTERM or SIGHUP cancels them, and on the way out every
process they started is stopped: the services first, then the infrastructure.
"""

from __future__ import annotations

import asyncio
import shlex
import signal
from functools import partial
from pathlib import Path

from deploy.stack import tools
from deploy.stack.console import say
from deploy.stack.infra import start_infra
from deploy.stack.pipeline import metrics_ports, start_pipeline
from deploy.stack.probes import gateway_ready
from deploy.stack.processes import StartupError, Supervisor, listening
from deploy.stack.profiles import Profile
from deploy.stack.seed import DEV_DOMAIN, DevTenant, seed_dev_tenant, seed_otp_template
from libs.broker import ensure_topics
from libs.database import apply_migrations, open_pool
from libs.settings import REPO_ROOT, Settings

RULE = "─" * 78


def _cancel_on_termination() -> None:
    """Let SIGTERM and SIGHUP stop us like Ctrl-C does (asyncio.run turns SIGINT into this)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for termination in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(termination, task.cancel)


def endpoints(profile: Profile) -> list[tuple[str, str]]:
    """Where each part of the infrastructure of ``profile`` answers."""
    return [
        ("Kafka bootstrap", f"127.0.0.1:{profile.kafka_port}"),
        ("Database", profile.database_url),
        ("Tracing UI", f"http://127.0.0.1:{profile.zipkin_port}/zipkin/  (Zipkin)"),
        (
            "Jaeger API",
            f"http://127.0.0.1:{profile.jaeger_ui_port}/api/traces/<trace id>"
            f"  (OTLP 127.0.0.1:{profile.otlp_grpc_port} gRPC, :{profile.otlp_http_port} HTTP)",
        ),
        (
            "Mailpit",
            f"http://127.0.0.1:{profile.mailpit_ui_port}"
            f"  (SMTP 127.0.0.1:{profile.mailpit_smtp_port})",
        ),
    ]


def _boxed(title: str, rows: list[tuple[str, str]], *notes: str) -> str:
    """A titled table of labelled values between rules, then free lines of notes."""
    width = max(len(label) for label, _ in rows)
    table = [f" {label:<{width}}  {value}" for label, value in rows]
    return "\n".join([RULE, f" {title}", RULE, *table, *notes, RULE])


def banner(profile: Profile, api_key: str) -> str:
    """What a developer needs once the platform is up: URLs, the dev API key, a first request."""
    gateway = f"http://127.0.0.1:{profile.http_port}"
    body = (
        f'{{"from":"Sendarix Dev <login@{DEV_DOMAIN}>","to":"you@example.com",'
        '"template":"otp","data":{"code":"123456","app":"Sendarix"},"category":"otp"}'
    )
    smtp = f"127.0.0.1:{profile.smtp_submission_port}"
    rows = [
        ("HTTP gateway", f"{gateway}  (API docs: {gateway}/docs)"),
        ("Console", f"http://127.0.0.1:{profile.console_port}/  (log in with an API key)"),
        ("SMTP submission", f"{smtp}  (STARTTLS, AUTH PLAIN/LOGIN, password = the API key)"),
        (
            "Feedback listener",
            f"127.0.0.1:{profile.feedback_port}  (SMTP for the bounce domain: DSNs, complaints)",
        ),
        *endpoints(profile),
        ("Metrics", f"{gateway}/metrics  (Prometheus; deploy/prometheus.yml scrapes them all)"),
        ("Service metrics", _service_metrics(profile)),
    ]
    rows += [
        ("Dev API key", api_key),
        ("Logs", str((profile.state_dir / "logs").relative_to(REPO_ROOT)) + "/"),
    ]
    return _boxed(
        f"Sendarix is running (profile {profile.name}). Ctrl-C stops everything.",
        rows,
        "",
        " Send an OTP:",
        f"   curl -sS {gateway}/v1/messages \\",
        f"     -H {shlex.quote(f'Authorization: Bearer {api_key}')} \\",
        "     -H 'Content-Type: application/json' \\",
        f"     -d {shlex.quote(body)}",
        "",
        " Or send over SMTP (any user name; the certificate is self-signed):",
        f"   swaks --server {smtp} --tls --auth PLAIN --auth-user apikey \\",
        f"     --auth-password {shlex.quote(api_key)} \\",
        f"     --from login@{DEV_DOMAIN} --to you@example.com \\",
        "     --header 'Subject: Hello over SMTP' --body 'Sent through the SMTP door.'",
        "",
        " Then, with the id it returns:",
        f"   http://127.0.0.1:{profile.console_port}/messages/ID  # the console (log in: dev key)",
        "   .venv/bin/sendarix message show ID    # status and timeline",
        "   .venv/bin/sendarix trace ID           # trace id, its tracing-UI page, its spans",
    )


def _service_metrics(profile: Profile) -> str:
    """Where each service serves its own metrics."""
    ports = metrics_ports(profile.metrics_base_port)
    listed = ", ".join(f"{name} {port}" for name, port in ports.items())
    return f"http://127.0.0.1:<port>/metrics  ({listed})"


async def _prepare(settings: Settings, tenant_file: Path) -> DevTenant:
    """Migrate the database, create the topics, seed the dev tenant and its template."""
    applied = await apply_migrations(settings.database_url)
    say(f"applied migrations {', '.join(applied)}" if applied else "database schema up to date")
    created = await ensure_topics(settings)
    say(f"created {len(created)} topics" if created else "topics up to date")
    pool = await open_pool(settings, size=2)
    try:
        tenant = await seed_dev_tenant(pool, tenant_file)
        await seed_otp_template(pool, tenant.tenant_id)
    finally:
        await pool.close()
    return tenant


async def serve_platform(profile: Profile) -> None:
    """``make run``: install, start and seed everything, print the banner, keep it all up."""
    _cancel_on_termination()
    supervisor = Supervisor(profile.state_dir / "logs")
    pipeline: list[str] = []
    try:
        doors = (
            (profile.http_port, "gateway"),
            (profile.smtp_submission_port, "SMTP door"),
            (profile.feedback_port, "feedback listener"),
        )
        for port, whose in doors:
            if listening(port):
                raise StartupError(
                    f"something already listens on 127.0.0.1:{port}, the {whose}'s port"
                    " (is `make run` running elsewhere?)"
                )
        await asyncio.to_thread(tools.install_all)
        await start_infra(profile, supervisor)
        settings = profile.settings()
        tenant = await _prepare(settings, profile.state_dir / "dev-tenant.json")
        say("starting the mailbox simulator, the services and the feedback listener")
        pipeline = start_pipeline(supervisor, settings, profile.metrics_base_port)
        try:
            await supervisor.wait_ready("ingest", probe=partial(gateway_ready, profile), within=120)
        except StartupError as error:
            say(f"the gateway is not ready; the stack keeps trying. {error}")
        print(banner(profile, tenant.api_key), flush=True)
        await supervisor.keep_alive()
    finally:
        say("stopping…")
        supervisor.stop(*pipeline)
        supervisor.stop_all()
        say("stopped")


async def serve_infra(profile: Profile) -> None:
    """The infrastructure only, for running services by hand or the tests against it."""
    _cancel_on_termination()
    supervisor = Supervisor(profile.state_dir / "logs")
    try:
        await start_infra(profile, supervisor)
        environment = f'eval "$(.venv/bin/python -m deploy.stack env --profile {profile.name})"'
        rows = [*endpoints(profile), ("Environment", environment)]
        title = f"Infrastructure of profile {profile.name} is up. Ctrl-C stops what it started."
        print(_boxed(title, rows), flush=True)
        await supervisor.keep_alive()
    finally:
        supervisor.stop_all()
