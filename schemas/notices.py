"""The public notice stream ``sendarix.notices``: CloudEvents 1.0 about a tenant, not a message.

Alerts (a bounce or complaint rate over its threshold, a destination domain deferring, the
critical lane slowing down) open and resolve here, and a webhook endpoint that was switched
off says why. Kafka key = tenant id; ``subject`` = what the notice is about (an alert id, an
endpoint id). The webhook service delivers notices to the tenant's endpoints like any event.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from schemas.common import Record

NOTICE_NAMESPACE = uuid.UUID("0b3c2f8e-5a41-4d7b-8f3e-2c9a6d1e4b57")


class NoticeType(StrEnum):
    """The CloudEvents ``type`` of a notice."""

    ALERT_OPENED = "sendarix.alert.opened"
    ALERT_RESOLVED = "sendarix.alert.resolved"
    WEBHOOK_DISABLED = "sendarix.webhook.disabled"


class AlertSeverity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


class NoticeData(Record):
    """What a notice says: whose it is, what kind, and the figures behind it."""

    tenant_id: str
    kind: str
    """``bounce_rate``, ``complaint_rate``, ``domain_deferrals``, ``critical_latency`` (alerts);
    ``endpoint_disabled`` (webhooks)."""
    severity: AlertSeverity | None = None
    key: str | None = None
    """What within the tenant: a recipient domain, an endpoint id; None for the whole tenant."""
    value: float | None = None
    threshold: float | None = None
    window_seconds: int | None = None
    sample: int | None = None
    """How many messages the value was measured over."""
    reason: str | None = None
    details: dict[str, str] = Field(default_factory=dict)


class Notice(Record):
    """A CloudEvents 1.0 envelope around ``NoticeData``."""

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str
    type: NoticeType
    subject: str
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str = "https://sendarix.dev/schemas/notices/v1"
    data: NoticeData


def notice_id(type_: NoticeType, subject: str, occurrence: str = "") -> str:
    """The deterministic id of a notice, so one published twice after a crash is one notice."""
    return str(uuid.uuid5(NOTICE_NAMESPACE, f"{type_.value}/{subject}/{occurrence}"))
