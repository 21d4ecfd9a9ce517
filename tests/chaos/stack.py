"""The stack a chaos run may break: a broker and a database of its own (profile ``chaos``), the
services and the mailbox simulator as processes, and one tenant to send as.

The ``test`` profile's infrastructure is never touched: other tests run against it.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from functools import partial

from aiokafka.admin import AIOKafkaAdminClient

from deploy.stack.infra import start_kafka, start_postgres
from deploy.stack.pipeline import SERVICES, SIMULATOR, start_pipeline
from deploy.stack.probes import gateway_ready, kafka_ready, postgres_ready
from deploy.stack.processes import StartupError, Supervisor, listening
from deploy.stack.profiles import CHAOS, Profile
from libs.broker import ensure_topics
from libs.database import apply_migrations, open_pool
from libs.settings import Settings
from libs.tenants import create_tenant
from libs.topics import catalogue

BROKER = "kafka"
DATABASE = "postgres"
SENDER_DOMAIN = "example.test"


def chaos_settings(profile: Profile, run_id: str) -> Settings:
    """Settings of one run: topics of its own, quick retries, no span export."""
    return profile.settings(
        topic_prefix=f"c{run_id}.",
        simulator_log=profile.state_dir / "run" / f"simulator-{run_id}.jsonl",
        tracing_enabled=False,
        log_json=True,
        retry_base_seconds=0.5,
        retry_max_seconds=5.0,
        retry_poll_seconds=0.2,
        smtp_timeout_seconds=5.0,
        webhook_retry_base_seconds=0.2,
    )


@dataclass
class ChaosStack:
    """A running stack that owns its broker and database, so it may restart them."""

    profile: Profile
    settings: Settings
    supervisor: Supervisor
    tenant_id: str
    api_key: str

    async def crash(self, service: str, *, settle: bool = True) -> None:
        """``kill -9`` a service and start it again; with ``settle``, wait until it is ready."""
        self.supervisor.kill(service)
        restarted_at = self.supervisor.log_path(service).stat().st_size
        await asyncio.to_thread(self.supervisor.restart, service)
        probe = partial(self._says_ready, service, restarted_at) if settle else None
        await self.supervisor.wait_ready(service, probe=probe, within=120)

    async def _says_ready(self, service: str, since: int) -> bool:
        """The service logged, after byte ``since`` of its log, that it is ready (consuming)."""
        with self.supervisor.log_path(service).open("rb") as log:
            log.seek(since)
            return f"{service} ready".encode() in log.read()

    async def restart_broker(self) -> None:
        """Stop the broker, start it again, wait until it serves metadata."""
        await asyncio.to_thread(self.supervisor.restart, BROKER)
        probe = partial(kafka_ready, self.profile)
        await self.supervisor.wait_ready(BROKER, probe=probe, within=120)

    async def restart_database(self) -> None:
        """Stop PostgreSQL (fast shutdown: clients are cut off), start it, wait for queries."""
        await asyncio.to_thread(self.supervisor.restart, DATABASE)
        probe = partial(postgres_ready, self.profile)
        await self.supervisor.wait_ready(DATABASE, probe=probe, within=60)

    def dead_services(self) -> list[str]:
        """Pipeline processes that ended on their own (none should)."""
        return [name for name in self.supervisor.exited() if name in (*SERVICES, SIMULATOR)]

    async def stop(self) -> None:
        """Stop every process, then drop the run's topics so the broker does not accumulate them."""
        await asyncio.to_thread(self.supervisor.stop, *SERVICES, SIMULATOR)
        if self.supervisor.running(BROKER):
            admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
            await admin.start()
            try:
                await admin.delete_topics([t.name for t in catalogue(self.settings.topic_prefix)])
            finally:
                await admin.close()
        await asyncio.to_thread(self.supervisor.stop_all)


async def start_chaos_stack(profile: Profile = CHAOS) -> ChaosStack:
    """Start the profile's broker and database, prepare them, start the pipeline.

    Fails when either already runs: a run must own what it restarts.
    """
    for name, port in ((BROKER, profile.kafka_port), (DATABASE, profile.postgres_port)):
        if listening(port):
            raise StartupError(f"{name} of profile {profile.name} already runs on port {port}")
    run_id = uuid.uuid4().hex[:8]
    settings = chaos_settings(profile, run_id)
    supervisor = Supervisor(profile.state_dir / "logs" / f"run-{run_id}")
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(start_postgres(profile, supervisor))
            group.create_task(start_kafka(profile, supervisor))
        await apply_migrations(settings.database_url)
        await ensure_topics(settings)
        pool = await open_pool(settings, size=1)
        try:
            tenant, api_key = await create_tenant(
                pool, f"chaos-{run_id}", [SENDER_DOMAIN], dev_mode=settings.dev_mode
            )
        finally:
            await pool.close()
        settings.simulator_log.parent.mkdir(parents=True, exist_ok=True)
        start_pipeline(supervisor, settings, profile.metrics_base_port)
        await supervisor.wait_ready(SIMULATOR, port=settings.simulator_port)
        await supervisor.wait_ready("ingest", probe=partial(gateway_ready, profile), within=120)
    except BaseException:
        supervisor.stop_all()
        raise
    return ChaosStack(profile, settings, supervisor, tenant.id, api_key)
