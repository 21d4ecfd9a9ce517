"""How a sending domain is shown, by ``/v1/domains`` and by ``sendarix domain``: its status and
each record to publish next to what the last check found for it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from libs.domain_records import CheckStatus, DomainStatus, RecordKind, dns_records
from libs.sending_domains import SendingDomain
from libs.settings import Settings


class DnsRecordView(BaseModel):
    """A record to publish and, once checked, whether DNS has it."""

    kind: RecordKind
    type: str
    name: str
    value: str
    required: bool
    """Whether the domain needs it to be verified (DMARC is recommended only)."""
    status: CheckStatus | None = None
    reason: str | None = None
    found: list[str] = []


class DomainView(BaseModel):
    """A sending domain: whether it may send, and the DNS records that prove it is ours."""

    domain: str
    status: DomainStatus
    dkim_selector: str
    created_in_dev_mode: bool
    created_at: datetime
    checked_at: datetime | None
    verified_at: datetime | None
    records: list[DnsRecordView]

    @classmethod
    def of(cls, domain: SendingDomain, settings: Settings) -> DomainView:
        checks = {check.kind: check for check in domain.checks}
        records = []
        for record in dns_records(domain.domain, domain.dkim, settings):
            check = checks.get(record.kind)
            records.append(
                DnsRecordView(
                    kind=record.kind,
                    type=record.type,
                    name=record.name,
                    value=record.value,
                    required=record.required,
                    status=check.status if check else None,
                    reason=check.reason if check else None,
                    found=list(check.found) if check else [],
                )
            )
        return cls(
            domain=domain.domain,
            status=domain.status,
            dkim_selector=domain.dkim.selector,
            created_in_dev_mode=domain.created_in_dev_mode,
            created_at=domain.created_at,
            checked_at=domain.checked_at,
            verified_at=domain.verified_at,
            records=records,
        )
