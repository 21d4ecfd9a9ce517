"""What comes back after delivery, through the whole topology: the simulator's complaint report
reaches the feedback listener and suppresses the address for everything but critical account
mail; a DSN after a 250 turns the message ``bounced`` and suppresses the address in its stream.
"""

from __future__ import annotations

import uuid

import pytest

from libs.tenants import Tenant
from libs.verp import read_return_path
from tests.e2e.conftest import Topology
from tests.support import delivery_status, eventually, jaeger_services, mail_from_null_sender

pytestmark = pytest.mark.e2e


async def suppressed_streams(topology: Topology, api_key: str, address: str) -> set[str]:
    """The streams the gateway says mail to ``address`` is stopped in."""
    response = await topology.http.get(
        f"/v1/suppressions/{address}", headers={"Authorization": f"Bearer {api_key}"}
    )
    response.raise_for_status()
    return {s["stream"] for s in response.json()["streams"] if s["suppressed"]}


def smtp_copies(topology: Topology, message_id: str) -> int:
    """How many times the simulator received the message."""
    return sum(message_id in m["message_id"] for m in topology.simulator_deliveries())


async def test_a_complaint_follows_delivery_in_the_messages_trace(
    topology: Topology, tenant: tuple[Tenant, str]
) -> None:
    _, api_key = tenant
    recipient = f"complaint+{uuid.uuid4().hex[:6]}@simulator.sendarix.test"
    accepted = await topology.send(
        api_key,
        {
            "from": "news@example.test",
            "to": recipient,
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

    async def everywhere() -> bool | None:
        streams = await suppressed_streams(topology, api_key, recipient)
        return True if streams == {"transactional", "broadcast"} else None

    assert await eventually(everywhere, timeout=30)
    notification = await topology.send(
        api_key,
        {
            "from": "news@example.test",
            "to": recipient,
            "subject": "Another summary",
            "text": "Hello again",
            "category": "notification",
        },
    )
    otp = await topology.send(
        api_key,
        {
            "from": "security@example.test",
            "to": recipient,
            "subject": "Your code",
            "text": "123456",
            "category": "otp",
        },
    )
    stopped = await topology.settled(api_key, notification["id"], "suppressed")
    [suppressed] = [e for e in stopped["events"] if e["type"] == "suppressed"]
    assert suppressed["problem"]["code"] == "suppressed_complaint"

    async def otp_delivered() -> bool | None:
        # the simulator complains about the OTP too, so it may already have moved on
        return True if smtp_copies(topology, otp["id"]) == 1 else None

    assert await eventually(otp_delivered, timeout=30)
    shown = await topology.settled(api_key, otp["id"], "complained")
    assert "delivered" in [event["type"] for event in shown["events"]]
    assert smtp_copies(topology, notification["id"]) == 0


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

    async def in_its_stream() -> bool | None:
        streams = await suppressed_streams(topology, api_key, recipient)
        return True if streams == {"transactional"} else None

    assert await eventually(in_its_stream, timeout=30)
