"""The console's browser tests share one topology: they only read and steer it through the
console (nothing is killed), and each test works as tenants of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from libs.settings import Settings
from tests.e2e.conftest import Topology, running_topology


@pytest.fixture(scope="package")
async def topology(settings: Settings) -> AsyncIterator[Topology]:
    async with running_topology(settings) as running:
        yield running
