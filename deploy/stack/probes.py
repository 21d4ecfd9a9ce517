"""Readiness of each infrastructure component: it answers the way Sendarix will use it.

A listening port is not enough: Kafka accepts connections long before it serves metadata, and
PostgreSQL before it accepts queries. Each check raises or returns False while not ready.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import httpx
from aiokafka.admin import AIOKafkaAdminClient

from deploy.stack.processes import listening
from deploy.stack.profiles import Profile


async def kafka_ready(profile: Profile) -> bool:
    """The broker lists its topics."""
    if not listening(profile.kafka_port):
        return False  # spares the client's connection-refused warnings
    admin = AIOKafkaAdminClient(
        bootstrap_servers=f"127.0.0.1:{profile.kafka_port}", request_timeout_ms=5000
    )
    try:
        await admin.start()
        await admin.list_topics()
        return True
    finally:
        await admin.close()


async def postgres_ready(profile: Profile) -> bool:
    """The ``sendarix`` database accepts connections (created first on a fresh cluster)."""
    server = await asyncpg.connect(
        f"postgresql://sendarix@127.0.0.1:{profile.postgres_port}/postgres", timeout=3
    )
    try:
        if not await server.fetchval("SELECT 1 FROM pg_database WHERE datname = 'sendarix'"):
            await server.execute("CREATE DATABASE sendarix")
    finally:
        await server.close()
    database = await asyncpg.connect(profile.database_url, timeout=3)
    await database.close()
    return True


async def _answers(url: str) -> bool:
    async with httpx.AsyncClient(timeout=3) as client:
        return (await client.get(url)).status_code == 200


async def jaeger_ready(profile: Profile) -> bool:
    """The query API answers and the OTLP/HTTP receiver listens."""
    return listening(profile.otlp_http_port) and await _answers(
        f"http://127.0.0.1:{profile.jaeger_ui_port}/api/services"
    )


async def zipkin_ready(profile: Profile) -> bool:
    """Zipkin reports itself and its Kafka collector up."""
    return await _answers(f"http://127.0.0.1:{profile.zipkin_port}/health")


async def mailpit_ready(profile: Profile) -> bool:
    """The API reports ready and the SMTP port listens."""
    return listening(profile.mailpit_smtp_port) and await _answers(
        f"http://127.0.0.1:{profile.mailpit_ui_port}/readyz"
    )


async def gateway_ready(profile: Profile) -> bool:
    """The HTTP gateway (ingest) reports ready."""
    return await _answers(f"http://127.0.0.1:{profile.http_port}/readyz")


READY: dict[str, Callable[[Profile], Awaitable[bool]]] = {
    "postgres": postgres_ready,
    "kafka": kafka_ready,
    "jaeger": jaeger_ready,
    "zipkin": zipkin_ready,
    "mailpit": mailpit_ready,
}
"""The readiness check of each infrastructure component, by name."""
