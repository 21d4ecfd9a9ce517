"""Session fixtures: the real broker and database of the ``test`` profile, topics of our own.

The infrastructure is started by ``deploy.stack`` (local processes, or testcontainers where a
Docker engine answers) unless it is already listening on the test ports, in which case it is
reused and left running.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from deploy.stack.profiles import TEST
from libs.broker import ensure_topics
from libs.database import apply_migrations, open_pool
from libs.settings import Settings
from libs.tenants import Tenant, create_tenant
from tests.dns_server import LoopbackDns


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def infra() -> Iterator[None]:
    """The broker, database, tracing and mail catcher of the test profile, up for the session."""
    ports = (TEST.kafka_port, TEST.postgres_port, TEST.mailpit_smtp_port, TEST.otlp_http_port)
    if all(_listening(port) for port in ports):
        yield
        return
    from deploy.stack.infra import test_infra

    with test_infra(TEST):
        yield


TEST_DATABASE_VARIABLE = "SENDARIX_TEST_DATABASE"
"""Names a database of this run's own on the test cluster (created when missing), so two
checkouts testing different migrations at once on one machine do not share tables."""


async def _database_url() -> str:
    """The test profile's database, or the one ``SENDARIX_TEST_DATABASE`` names."""
    name = os.environ.get(TEST_DATABASE_VARIABLE)
    if not name:
        return TEST.database_url
    if not name.isidentifier():
        raise ValueError(f"{TEST_DATABASE_VARIABLE} must be a plain identifier, not {name!r}")
    connection = await asyncpg.connect(TEST.database_url)
    try:
        if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return TEST.database_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
async def settings(infra: None) -> Settings:
    """Settings of the test stack, with a topic prefix of this session's own."""
    result = TEST.settings(
        database_url=await _database_url(),
        topic_prefix=f"t{uuid.uuid4().hex[:8]}.",
        retry_base_seconds=0.2,
        retry_max_seconds=2.0,
        retry_poll_seconds=0.1,
        smtp_timeout_seconds=3.0,
        webhook_retry_base_seconds=0.1,
        log_json=False,
        smtp_submission_port=0,  # an in-process ingest's SMTP door on a free port of its own
    )
    await apply_migrations(result.database_url)
    await ensure_topics(result)
    return result


@pytest.fixture(scope="session")
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A connection pool to the test database."""
    connection_pool = await open_pool(settings, size=5)
    yield connection_pool
    await connection_pool.close()


@pytest.fixture
async def tenant(pool: asyncpg.Pool) -> tuple[Tenant, str]:
    """A fresh tenant sending from ``example.test`` (created in dev mode) and its API key."""
    return await create_tenant(
        pool, f"test-{uuid.uuid4().hex[:6]}", ["example.test"], dev_mode=True
    )


@pytest.fixture(scope="session")
def dns_zone() -> Iterator[LoopbackDns]:
    """A DNS server on loopback (UDP and TCP) answering the records tests add to it (each test
    under domain names of its own)."""
    with LoopbackDns().running() as zone:
        yield zone
