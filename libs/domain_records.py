"""The DNS records a sending domain publishes, and the verdict on what DNS answers for each.

Pure functions: ``libs.domain_verification`` asks DNS and hands the answers here. A domain is
verified when its DKIM key, its SPF include and its return-path CNAME are all found as
published; DMARC is checked and reported but not required (a domain without a DMARC policy
still authenticates, mailbox providers only rank it lower), so adding it never blocks sending.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from libs.dkim_keys import DkimKey
from libs.settings import Settings


class DomainStatus(StrEnum):
    """Where a domain stands with DNS: not proven yet, proven, or proven once and lost."""

    PENDING = "pending"
    VERIFIED = "verified"
    FAILED = "failed"


class RecordKind(StrEnum):
    DKIM = "dkim"
    SPF = "spf"
    DMARC = "dmarc"
    RETURN_PATH = "return_path"


REQUIRED = frozenset({RecordKind.DKIM, RecordKind.SPF, RecordKind.RETURN_PATH})
"""What a domain must publish to be verified; DMARC is recommended only."""


@dataclass(frozen=True)
class DnsRecord:
    """One record to publish: its purpose, type, full name and value."""

    kind: RecordKind
    type: str
    name: str
    value: str

    @property
    def required(self) -> bool:
        return self.kind in REQUIRED


class CheckStatus(StrEnum):
    PASS = "pass"
    MISSING = "missing"
    WRONG_VALUE = "wrong_value"
    UNCHECKED = "unchecked"
    """DNS could not answer (SERVFAIL, timeout): not held against the domain."""


@dataclass(frozen=True)
class RecordCheck:
    """What DNS answered for one record, and why that passes or not."""

    kind: RecordKind
    status: CheckStatus
    reason: str
    found: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "status": self.status.value,
            "reason": self.reason,
            "found": list(self.found),
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> RecordCheck:
        return cls(
            RecordKind(value["kind"]),
            CheckStatus(value["status"]),
            value["reason"],
            tuple(value.get("found", ())),
        )


@dataclass(frozen=True)
class Unanswered:
    """DNS gave no usable answer (SERVFAIL, timeout, refused); ``reason`` says which."""

    reason: str


Answer = tuple[str, ...] | Unanswered
"""The TXT strings (each record's strings joined) or CNAME targets found; empty: none."""


def dns_records(domain: str, key: DkimKey, settings: Settings) -> list[DnsRecord]:
    """The records a tenant publishes for ``domain``, required ones first."""
    return [
        DnsRecord(
            RecordKind.DKIM,
            "TXT",
            f"{key.selector}._domainkey.{domain}",
            f"v=DKIM1; k=rsa; p={key.public_key}",
        ),
        DnsRecord(RecordKind.SPF, "TXT", domain, f"v=spf1 include:{settings.spf_include} ~all"),
        DnsRecord(
            RecordKind.RETURN_PATH,
            "CNAME",
            f"{settings.return_path_label}.{domain}",
            settings.bounce_host,
        ),
        DnsRecord(
            RecordKind.DMARC,
            "TXT",
            f"_dmarc.{domain}",
            f"v=DMARC1; p=none; rua=mailto:dmarc@{domain}",
        ),
    ]


def check_record(record: DnsRecord, answer: Answer) -> RecordCheck:
    """The verdict on one record given what DNS answered for its name and type."""
    if isinstance(answer, Unanswered):
        return RecordCheck(record.kind, CheckStatus.UNCHECKED, f"could not check: {answer.reason}")
    if record.kind is RecordKind.DKIM:
        return _check_dkim(record, answer)
    if record.kind is RecordKind.SPF:
        return _check_spf(record, answer)
    if record.kind is RecordKind.DMARC:
        return _check_dmarc(record, answer)
    return _check_return_path(record, answer)


def _missing(record: DnsRecord, found: tuple[str, ...], what: str) -> RecordCheck:
    return RecordCheck(record.kind, CheckStatus.MISSING, f"no {what} at {record.name}", found)


def _wrong(record: DnsRecord, found: tuple[str, ...], reason: str) -> RecordCheck:
    return RecordCheck(record.kind, CheckStatus.WRONG_VALUE, reason, found)


def _passed(record: DnsRecord, found: tuple[str, ...]) -> RecordCheck:
    return RecordCheck(record.kind, CheckStatus.PASS, "found as published", found)


def dkim_tags(text: str) -> dict[str, str]:
    """The tags of a DKIM key record (RFC 6376 3.6.1), white space removed from values."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        name, separator, value = part.partition("=")
        if separator:
            tags[name.strip()] = re.sub(r"\s+", "", value)
    return tags


def _check_dkim(record: DnsRecord, found: tuple[str, ...]) -> RecordCheck:
    keys = [text for text in found if dkim_tags(text).get("p")]
    if not keys:
        return _missing(record, found, "DKIM key record")
    expected = dkim_tags(record.value)["p"]
    if any(dkim_tags(text)["p"] == expected for text in keys):
        return _passed(record, found)
    return _wrong(record, found, "the published DKIM key is not this domain's key")


def _check_spf(record: DnsRecord, found: tuple[str, ...]) -> RecordCheck:
    policies = [text for text in found if text.lower().split(" ", 1)[0] == "v=spf1"]
    if not policies:
        return _missing(record, found, "SPF record (v=spf1)")
    if len(policies) > 1:
        return _wrong(record, found, "more than one SPF record: receivers treat that as an error")
    include = record.value.split()[1].lower()
    if include in policies[0].lower().split():
        return _passed(record, found)
    return _wrong(record, found, f"the SPF record does not have {include}")


def _check_dmarc(record: DnsRecord, found: tuple[str, ...]) -> RecordCheck:
    policies = [text for text in found if text.replace(" ", "").startswith("v=DMARC1")]
    if not policies:
        return _missing(record, found, "DMARC record (v=DMARC1)")
    return _passed(record, found)


def _check_return_path(record: DnsRecord, found: tuple[str, ...]) -> RecordCheck:
    if not found:
        return _missing(record, found, "CNAME")
    targets = {target.lower().rstrip(".") for target in found}
    if targets == {record.value.lower()}:
        return _passed(record, found)
    return _wrong(record, found, f"the CNAME points to {', '.join(sorted(targets))}")


def domain_status(previous: DomainStatus, checks: Sequence[RecordCheck]) -> DomainStatus:
    """The domain's status after a check.

    Verified when every required record passes. A required record found missing or wrong
    leaves a domain never verified pending, and turns a verified one failed. When DNS could
    not answer for some record and nothing failed for certain, the status stays as it was.
    """
    required = [check for check in checks if check.kind in REQUIRED]
    if all(check.status is CheckStatus.PASS for check in required):
        return DomainStatus.VERIFIED
    if all(check.status in (CheckStatus.PASS, CheckStatus.UNCHECKED) for check in required):
        return previous
    return DomainStatus.PENDING if previous is DomainStatus.PENDING else DomainStatus.FAILED
