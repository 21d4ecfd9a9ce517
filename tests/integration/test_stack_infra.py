"""The local infrastructure starts on a throw-away profile, answers, and stops without a trace.

Kafka is the test session's own (its port is already listening, so it is reused and left alone);
PostgreSQL, Jaeger and Mailpit are started fresh on free ports.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from deploy.stack.infra import infra_ports, start_infra
from deploy.stack.processes import Supervisor, listening
from deploy.stack.profiles import TEST, Profile
from libs.settings import Settings

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def scratch(settings: Settings) -> Iterator[Profile]:
    """A profile of its own, but for the session's Kafka; its state is removed afterwards."""
    ports: dict[str, Any] = {
        field.name: _free_port()
        for field in dataclasses.fields(TEST)
        if field.name.endswith("_port") and field.name != "kafka_port"
    }
    profile = dataclasses.replace(TEST, name=f"pytest-{uuid.uuid4().hex[:8]}", **ports)
    yield profile
    shutil.rmtree(profile.state_dir, ignore_errors=True)


async def test_missing_components_start_and_stop_and_running_ones_are_reused(
    scratch: Profile,
) -> None:
    supervisor = Supervisor(scratch.state_dir / "logs")
    try:
        started = await start_infra(scratch, supervisor)

        assert started == ["postgres", "jaeger", "mailpit"]
        connection = await asyncpg.connect(scratch.database_url)
        assert await connection.fetchval("SELECT current_database()") == "sendarix"
        await connection.close()
        async with httpx.AsyncClient() as client:
            jaeger = await client.get(f"http://127.0.0.1:{scratch.jaeger_ui_port}/api/services")
            mailpit = await client.get(f"http://127.0.0.1:{scratch.mailpit_ui_port}/api/v1/info")
        assert jaeger.status_code == mailpit.status_code == 200
    finally:
        supervisor.stop_all()

    ports = infra_ports(scratch)
    assert [name for name, port in ports.items() if listening(port)] == ["kafka"]
