"""Services several integration modules run the same way, once per module that asks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from deploy.simulator.server import MailboxSimulator
from libs.settings import Settings
from services.ingest.app import IngestService
from services.sender.app import SenderService
from tests.support import started


@pytest.fixture(scope="module")
async def service(settings: Settings) -> AsyncIterator[IngestService]:
    """ingest, its gateway on a port of the OS's choosing (a module may mean another service)."""
    async with started(IngestService(settings.model_copy(update={"http_port": 0}))) as running:
        yield running


@pytest.fixture
async def client(service: IngestService) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of ingest's gateway, in process."""
    transport = httpx.ASGITransport(app=service.api)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest.test") as http:
        yield http


@pytest.fixture(scope="module")
async def simulator(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[MailboxSimulator]:
    """The mailbox simulator on a free port, logging what it received to a file of its own."""
    log = tmp_path_factory.mktemp("simulator") / "mailbox.jsonl"
    async with started(
        MailboxSimulator(settings.model_copy(update={"simulator_port": 0, "simulator_log": log}))
    ) as running:
        yield running


@pytest.fixture(scope="module")
async def sender(settings: Settings) -> AsyncIterator[SenderService]:
    async with started(SenderService(settings)) as running:
        yield running
