"""What comes back after delivery, through the whole topology: the simulator's complaint report
reaches the feedback listener, and a DSN after a 250 turns the message ``bounced``.

(That a complaint then suppresses the address in every non-critical stream is policy-check's
part, tested with it.)
"""

from __future__ import annotations

import uuid

import pytest

from libs.tenants import Tenant
from libs.verp import read_return_path
from tests.e2e.conftest import Topology
from tests.support import delivery_status, eventually, jaeger_services, mail_from_null_sender

pytestmark = pytest.mark.e2e


async def test_a_complaint_follows_delivery_in_the_messages_trace(
    topology: Topology, tenant: tuple[Tenant, str]
) -> None:
    _, api_key = tenant
    accepted = await topology.send(
        api_key,
        {
            "from": "news@example.test",
            "to": f"complaint+{uuid.uuid4().hex[:6]}@simulator.sendarix.test",
            "subject": "Your weekly summary",
            "text": "Hello",
            "category": "notification",
        },
    )

    shown = await topology.settled(api_key, accepted["id"], "complained")

    types = [event["type"] for event in shown["events"]]
    assert types.index("delivered") < types.index("complained")
    [complaint] = [e for e in shown["events"] if e["type"] == "complained"]
    assert complaint["feedback_type"] == "abuse"

    async def traced() -> set[str] | None:
        services = await jaeger_services(topology.settings, accepted["trace_id"])
        return services if services and {"sender", "feedback"} <= services else None

    assert {"sender", "feedback"} <= await eventually(traced, timeout=30)


async def test_a_dsn_after_the_250_bounces_the_message(
    topology: Topology, tenant: tuple[Tenant, str]
) -> None:
    _, api_key = tenant
    recipient = f"success+{uuid.uuid4().hex[:6]}@simulator.sendarix.test"
    accepted = await topology.send(
        api_key,
        {
            "from": "billing@example.test",
            "to": recipient,
            "subject": "Your receipt",
            "text": "Thanks!",
            "category": "receipt",
        },
    )
    message_id = accepted["id"]
    await topology.settled(api_key, message_id, "delivered")
    [copy] = [m for m in topology.simulator_deliveries() if message_id in m["message_id"]]
    return_path = read_return_path(copy["mail_from"], topology.settings.bounce_address)
    assert return_path is not None and return_path.message_id == message_id

    await mail_from_null_sender(
        topology.settings.feedback_port,
        copy["mail_from"],
        delivery_status(message_id, recipient),
    )

    shown = await topology.settled(api_key, message_id, "bounced")
    [bounce] = [e for e in shown["events"] if e["type"] == "bounced"]
    assert bounce["bounce"] == {"category": "invalid_recipient", "hard": True, "async": True}
    assert bounce["smtp"]["enhanced_status"] == "5.1.1"
