"""``make chaos`` in small: every service killed (``kill -9``), the broker and the database
restarted, while messages flow through both intakes; nothing accepted is lost or sent twice.

It runs on the ``chaos`` profile's own broker and database, which it starts and may restart.
"""

from __future__ import annotations

import pytest

from deploy.stack.pipeline import SERVICES
from schemas.events import MessageState
from tests.chaos.scenario import run_chaos
from tests.chaos.stack import start_chaos_stack

pytestmark = pytest.mark.e2e

MESSAGES = 300


async def test_nothing_accepted_is_lost_or_sent_twice_through_every_fault() -> None:
    stack = await start_chaos_stack()
    try:
        report = await run_chaos(stack, MESSAGES, rate=25.0, settle=False, drain_timeout=90.0)
    finally:
        await stack.stop()

    figures = report.figures
    assert [f"kill -9 {service}" for service in SERVICES] == [
        fault for fault in report.faults if fault.startswith("kill -9")
    ]
    assert {"restart broker", "restart database"} <= set(report.faults)
    assert report.dead_services == []
    assert figures.refused == 0, report.refusals
    assert figures.accepted == MESSAGES
    assert figures.lost == 0, figures
    assert figures.duplicated == 0, figures
    assert figures.conflicting == 0, figures
    assert figures.delivered_unseen == 0, figures
    assert figures.received_unaccepted == 0, figures
    delivered = figures.outcomes.get(MessageState.DELIVERED.value, 0)
    assert delivered + figures.outcome_unknown == MESSAGES, figures
