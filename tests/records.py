"""Valid pipeline records for tests: a message spec with whatever a test wants to change."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from schemas.common import Lane, Mailbox
from schemas.pipeline import MessageSpec, RenderedContent, RenderedMessage

ADDRESS_FIELDS = ("sender", "recipient", "reply_to")


def message_spec(**fields: Any) -> MessageSpec:
    """A spec of a fresh message (new id and trace id, accepted now); ``fields`` override.

    An address field given as a string is a bare address: ``recipient="a@example.test"``.
    """
    values: dict[str, Any] = {
        "message_id": str(uuid.uuid4()),
        "tenant_id": str(uuid.uuid4()),
        "trace_id": uuid.uuid4().hex,
        "accepted_at": datetime.now(UTC),
        "sender": Mailbox(address="app@example.test", name="Example App"),
        "recipient": Mailbox(address="user@example.test"),
        "lane": Lane.NORMAL,
    }
    for name in ADDRESS_FIELDS:
        if isinstance(fields.get(name), str):
            fields = fields | {name: Mailbox(address=fields[name])}
    return MessageSpec(**(values | fields))


def rendered_message(
    subject: str = "Subject", text: str = "Body", **fields: Any
) -> RenderedMessage:
    """A rendered message with plain-text content; ``fields`` override its spec."""
    return RenderedMessage(
        message=message_spec(**fields), content=RenderedContent(subject=subject, text=text)
    )
