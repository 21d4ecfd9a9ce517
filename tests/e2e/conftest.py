"""The whole topology as separate processes: the services, the feedback listener and the
mailbox simulator.

The processes run under ``deploy.stack``'s supervisor, exactly as ``make run`` starts them, with
the test stack's infrastructure and topics of this module's own.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.stack.pipeline import SERVICES, start_pipeline
from deploy.stack.probes import gateway_ready
from deploy.stack.processes import Supervisor
from deploy.stack.profiles import TEST
from libs.broker import ensure_topics
from libs.settings import Settings
from tests.e2e.browser import chromium  # a fixture of the console's browser tests
from tests.support import eventually

pytestmark = pytest.mark.e2e

ALERT_EVALUATION_SECONDS = 1.0
"""How often the analytics service evaluates alerts in the pipeline under test."""


@dataclass
class Topology:
    """The running pipeline: its settings, its processes and an HTTP client for the gateway."""

    settings: Settings
    supervisor: Supervisor
    http: httpx.AsyncClient

    def simulator_deliveries(self) -> list[dict[str, Any]]:
        """Every message the mailbox simulator accepted, as it logged them."""
        path: Path = self.settings.simulator_log
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    async def send(self, api_key: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/messages``, which must be accepted; the 202 answer."""
        response = await self.http.post(
            "/v1/messages", json=body, headers={"Authorization": f"Bearer {api_key}"}
        )
        assert response.status_code == 202, response.text
        accepted: dict[str, Any] = response.json()
        return accepted

    async def settled(
        self, api_key: str, message_id: str, status: str, timeout: float = 60
    ) -> dict[str, Any]:
        """``GET /v1/messages/{id}`` once the message has ``status``."""

        async def check() -> dict[str, Any] | None:
            response = await self.http.get(
                f"/v1/messages/{message_id}", headers={"Authorization": f"Bearer {api_key}"}
            )
            if response.status_code != 200:
                return None
            shown: dict[str, Any] = response.json()
            return shown if shown["status"] == status else None

        return await eventually(check, timeout=timeout)

    async def in_mailpit(self, subject: str) -> dict[str, Any]:
        """The message Mailpit received with ``subject``, as its API lists it."""

        async def found() -> dict[str, Any] | None:
            async with httpx.AsyncClient(timeout=5) as client:
                answer = await client.get(
                    f"{self.settings.mailpit_ui_url}/api/v1/search",
                    params={"query": f'subject:"{subject}"'},
                )
            messages: list[dict[str, Any]] = answer.json().get("messages") or []
            return messages[0] if messages else None

        return await eventually(found)


__all__ = ["chromium"]


@asynccontextmanager
async def running_topology(settings: Settings) -> AsyncIterator[Topology]:
    """Every process of the platform, on topics of their own, until the block ends."""
    run_id = uuid.uuid4().hex[:8]
    run_settings = settings.model_copy(
        update={
            "topic_prefix": f"e{run_id}.",
            "simulator_log": TEST.state_dir / "run" / f"simulator-{run_id}.jsonl",
            "log_json": True,
            "smtp_submission_port": TEST.smtp_submission_port,
            "alert_evaluation_seconds": ALERT_EVALUATION_SECONDS,
        }
    )
    await ensure_topics(run_settings)
    supervisor = Supervisor(TEST.state_dir / "logs" / f"e2e-{run_id}")
    start_pipeline(supervisor, run_settings, TEST.metrics_base_port)
    try:
        await supervisor.wait_ready("simulator", port=run_settings.simulator_port)
        await supervisor.wait_ready("feedback", port=run_settings.feedback_port)
        await supervisor.wait_ready("ingest", probe=lambda: gateway_ready(TEST))
        await supervisor.wait_ready("console", port=run_settings.console_port)
        for service in SERVICES:
            assert supervisor.running(service), supervisor.tail(service)
        async with httpx.AsyncClient(base_url=run_settings.public_url, timeout=10) as http:
            yield Topology(run_settings, supervisor, http)
    finally:
        supervisor.stop_all()


@pytest.fixture(scope="module")
async def topology(settings: Settings) -> AsyncIterator[Topology]:
    """A topology per test module: a module may kill and restart its services."""
    async with running_topology(settings) as running:
        yield running
