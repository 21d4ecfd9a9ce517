"""How suppressions are shown, by ``/v1/suppressions`` and by ``sendarix suppression``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel

from libs.suppressions import CONSENT_REASONS, Suppression, SuppressionReason
from schemas.common import Stream


class SuppressionView(BaseModel):
    """One suppression: an address not mailed in one stream, for one reason."""

    address: str
    stream: Stream
    reason: SuppressionReason
    created_at: datetime | None
    expires_at: datetime | None
    """None: for good."""
    source_message_id: str | None
    """The message whose bounce, complaint or unsubscribe taught it."""
    note: str | None
    created_by: str | None
    """``key:<id>`` (the API), ``cli``, or None (learned from events)."""

    @classmethod
    def of(cls, found: Suppression) -> SuppressionView:
        return cls(
            address=found.address,
            stream=found.stream,
            reason=found.reason,
            created_at=found.created_at,
            expires_at=found.expires_at,
            source_message_id=found.source_message_id,
            note=found.note,
            created_by=found.created_by,
        )


class StreamCheck(BaseModel):
    """Whether mail to the address goes in one stream."""

    stream: Stream
    suppressed: bool
    """True: mail in this stream is stopped (but see ``critical_mail_goes``)."""
    critical_mail_goes: bool
    """Critical account mail (OTP, password reset, login verification, security alerts) still
    goes: the suppressions here only withdraw consent (complaint, unsubscribe)."""
    suppressions: list[SuppressionView]


class AddressCheck(BaseModel):
    """An address's suppressions in force, per stream."""

    address: str
    streams: list[StreamCheck]

    @classmethod
    def of(cls, address: str, found: Sequence[Suppression]) -> AddressCheck:
        streams = []
        for stream in Stream:
            here = [s for s in found if s.stream is stream]
            streams.append(
                StreamCheck(
                    stream=stream,
                    suppressed=bool(here),
                    critical_mail_goes=all(s.reason in CONSENT_REASONS for s in here),
                    suppressions=[SuppressionView.of(s) for s in here],
                )
            )
        return cls(address=address, streams=streams)
