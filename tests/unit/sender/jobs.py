"""Delivery jobs for the sender's tests (unit and integration)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from schemas.common import Lane, Mailbox
from schemas.pipeline import DeliveryJob, RenderedContent, Route
from tests.records import message_spec

OTP = RenderedContent(subject="Your code", text="123456", html="<b>123456</b>")


def delivery_job(
    recipient: str | Mailbox = "success@simulator.sendarix.test",
    *,
    route: Route | None = None,
    attempt: int = 1,
    retry_for: timedelta = timedelta(hours=1),
    content: RenderedContent = OTP,
    **spec_fields: Any,
) -> DeliveryJob:
    """The first attempt of a fresh critical-lane message; ``spec_fields`` override its spec.

    A ``recipient`` given as a string is a bare address.
    """
    spec = message_spec(
        **{
            "sender": Mailbox(address="app@example.test", name="Example App"),
            "recipient": recipient,
            "lane": Lane.CRITICAL,
            "category": "otp",
        }
        | spec_fields
    )
    return DeliveryJob(
        message=spec,
        content=content,
        route=route or Route(name="simulator", host="127.0.0.1", port=25, pool="default"),
        attempt=attempt,
        retry_until=spec.accepted_at + retry_for,
    )
