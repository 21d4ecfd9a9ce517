"""The stack a benchmark runs on: the ``bench`` profile's infrastructure, the sink, the services.

Infrastructure already listening on the profile's ports is reused and left running; whatever is
started here is stopped at the end. Each run gets topics (a fresh prefix) and a tenant of its own.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

import asyncpg

from deploy.stack.console import say
from deploy.stack.infra import start_infra
from deploy.stack.pipeline import SERVICES, child_env, start_pipeline
from deploy.stack.probes import gateway_ready
from deploy.stack.processes import Supervisor
from deploy.stack.profiles import BENCH
from libs.broker import ensure_topics
from libs.database import apply_migrations, open_pool
from libs.settings import REPO_ROOT, Settings
from libs.templates import put_template
from libs.tenants import create_tenant
from tests.bench.sink import SINK, Sink

SINK_SMTP_PORT = BENCH.mailpit_smtp_port + 1
SINK_HTTP_PORT = BENCH.mailpit_smtp_port + 2
SENDER_DOMAIN = "example.test"

NOTICE_TEMPLATE = (
    "bench-notice",
    "{{ product }}: {{ count }} updates for {{ name }}",
    "<h1>Hello {{ name }}</h1><p>Here is what changed in {{ product }}:</p>"
    "<ul>{% for item in items %}<li>{{ item }}</li>{% endfor %}</ul>"
    "<p><a href='https://example.test/settings'>Notification settings</a></p>",
    None,
)
OTP_TEMPLATE = (
    "bench-otp",
    "Your {{ app }} code is {{ code }}",
    "<p>Your {{ app }} login code is <b>{{ code }}</b>. It expires in 10 minutes.</p>",
    "Your {{ app }} login code is {{ code }}. It expires in 10 minutes.",
)


@dataclass(frozen=True)
class BenchTenant:
    """A tenant of this run: its id (for records on the topic), its API key (for HTTP), and
    how much of its security mail may enter the critical lane."""

    id: str
    api_key: str
    critical_per_second: float
    critical_burst: int


@dataclass
class BenchStack:
    """The running stack of one benchmark run."""

    settings: Settings
    supervisor: Supervisor
    sink: Sink
    pool: asyncpg.Pool
    tenant: BenchTenant
    infra: list[str] = field(default_factory=list)
    """The infrastructure components this run started (the others were already running)."""

    def running(self) -> dict[str, int]:
        """The pid of every process this run started and that still runs, by name."""
        return {
            name: self.supervisor.pid(name)
            for name in self.supervisor.names
            if self.supervisor.running(name)
        }

    def add_instance(self, service: str, number: int) -> str:
        """Start one more instance of ``service``: same settings, so the same consumer groups."""
        name = f"{service}-{number}"
        self.supervisor.start(
            name,
            [sys.executable, "-m", SERVICES[service]],
            env=child_env(self.settings),
            cwd=REPO_ROOT,
        )
        return name

    async def add_tenant(self) -> BenchTenant:
        """One more tenant, made as the first one was (the fairness scenario has two)."""
        return await _seed(self.pool)


async def _seed(pool: asyncpg.Pool) -> BenchTenant:
    """A tenant of this run's own, with the two templates the load uses."""
    tenant, api_key = await create_tenant(
        pool, f"bench-{uuid.uuid4().hex[:6]}", [SENDER_DOMAIN], dev_mode=True
    )
    for name, subject, html, text in (NOTICE_TEMPLATE, OTP_TEMPLATE):
        await put_template(pool, tenant.id, name, subject, html, text)
    return BenchTenant(tenant.id, api_key, tenant.critical_per_second, tenant.critical_burst)


@asynccontextmanager
async def bench_stack(
    tracing: bool, lane_split: bool, services: bool = True
) -> AsyncIterator[BenchStack]:
    """Bring the bench stack up (reusing what runs), yield it, stop what this run started.

    Without ``services`` only the infrastructure and the sink run: enough for the baselines.
    With ``lane_split`` the stage services run as urgent and patient processes.
    """
    run_id = uuid.uuid4().hex[:8]
    supervisor = Supervisor(BENCH.state_dir / "logs" / f"bench-{run_id}")
    sink = Sink(SINK_SMTP_PORT, SINK_HTTP_PORT)
    pool: asyncpg.Pool | None = None
    try:
        started = await start_infra(BENCH, supervisor)
        sink.start(supervisor)
        settings = BENCH.settings(
            topic_prefix=f"b{run_id}.",
            relay_port=SINK_SMTP_PORT,
            simulator_log=BENCH.state_dir / "run" / f"simulator-{run_id}.jsonl",
            tracing_enabled=tracing,
        )
        await apply_migrations(settings.database_url)
        await ensure_topics(settings)
        pool = await open_pool(settings, size=4)
        tenant = await _seed(pool)
        await supervisor.wait_ready(SINK, port=SINK_HTTP_PORT)
        if services:
            say(f"starting the services (topic prefix {settings.topic_prefix})")
            start_pipeline(supervisor, settings, BENCH.metrics_base_port, lane_split)
            await supervisor.wait_ready("ingest", probe=partial(gateway_ready, BENCH), within=120)
        yield BenchStack(settings, supervisor, sink, pool, tenant, started)
    finally:
        if pool is not None:
            await pool.close()
        await sink.close()
        supervisor.stop_all()
