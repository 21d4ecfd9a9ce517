"""Pipeline records a stage can never decode: skipped, and reported when the message is known.

``libs.broker.parse_record`` logs such a record and returns None so the partition moves on. If
the record's message spec is still a valid ``MessageSpec`` (only the stage-specific part is
broken), the message is reported ``failed`` so its sender learns it will never be delivered.
"""

from __future__ import annotations

import json

from faststream.kafka import KafkaBroker, KafkaMessage
from pydantic import ValidationError

from libs.events import emit, event_data
from libs.settings import Settings
from schemas.common import Problem
from schemas.events import MessageState
from schemas.pipeline import MessageSpec

UNDECODABLE = "undecodable_record"


def spec_in(body: bytes) -> MessageSpec | None:
    """The message spec inside an undecodable pipeline record, if that part is intact.

    Every pipeline record carries it as ``message``, or (a ``RetryRequest``) as ``job.message``.
    """
    try:
        record = json.loads(body)
        return MessageSpec.model_validate(record.get("message") or record["job"]["message"])
    except (ValueError, TypeError, KeyError, AttributeError, ValidationError):
        return None


async def report_undecodable(
    broker: KafkaBroker, settings: Settings, service: str, message: KafkaMessage
) -> None:
    """Emit ``failed`` for an undecodable record whose message can still be identified."""
    spec = spec_in(message.body)
    if spec is None:
        return
    problem = Problem(code=UNDECODABLE, detail=f"{service} could not decode the record")
    await emit(broker, settings, MessageState.FAILED, event_data(spec, service, problem=problem))
