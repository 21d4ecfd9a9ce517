"""The benchmark's Go SMTP sink: it answers like a server and records each Message-ID once."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import aiosmtplib
import pytest

from deploy.stack.processes import Supervisor
from deploy.stack.profiles import TEST
from tests.bench.baselines import raw_message
from tests.bench.sink import SINK, Sink
from tests.support import eventually

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    supervisor = Supervisor(TEST.state_dir / "logs" / f"sink-{uuid.uuid4().hex[:6]}")
    running = Sink(_free_port(), _free_port())
    running.start(supervisor)
    try:
        await supervisor.wait_ready(SINK, port=running.http_port)
        await supervisor.wait_ready(SINK, port=running.smtp_port)
        yield running
    finally:
        await running.close()
        supervisor.stop_all()


async def test_sink_records_every_message_of_a_reused_connection(sink: Sink) -> None:
    ids = [f"bench-{uuid.uuid4().hex}" for _ in range(3)]
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.smtp_port) as client:
        for message_id in ids:
            response = await client.sendmail(
                "bounces@example.test", ["user@mail.example.com"], raw_message(message_id, 4096)
            )
            assert response[1].startswith("2.0.0")

    async def all_there() -> bool | None:
        await sink.poll()
        return True if set(ids) <= sink.received.keys() else None

    assert await eventually(all_there)
    assert all(sink.copies[message_id] == 1 for message_id in ids)
