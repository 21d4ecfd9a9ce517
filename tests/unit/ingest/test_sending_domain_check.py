"""The from-check: a tenant's domain, and whether it may send now (verified, or dev mode's)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from libs.tenants import Tenant
from schemas.send import SendRequest
from services.ingest.validate import Addresses, check_request

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
TENANT = Tenant(
    id="t1",
    name="acme",
    domains=("verified.test", "dev.test", "pending.test"),
    verified_domains=("verified.test",),
    dev_domains=("dev.test",),
)


def refusals(sender: str, dev_mode: bool) -> list[tuple[str, str]]:
    request = SendRequest.model_validate(
        {"from": sender, "to": ["jane@example.org"], "subject": "Hi", "text": "Hello"}
    )
    sendable = TENANT.sendable_domains(dev_mode)
    checked = check_request(request, TENANT.domains, None, NOW, sendable)
    return [] if isinstance(checked, Addresses) else [(v.code, v.pointer) for v in checked]


def test_sendable_domains_depend_on_dev_mode() -> None:
    assert TENANT.sendable_domains(dev_mode=False) == ("verified.test",)
    assert TENANT.sendable_domains(dev_mode=True) == ("verified.test", "dev.test")


@pytest.mark.parametrize(
    ("sender", "dev_mode", "found"),
    [
        ("a@verified.test", False, []),
        ("a@mail.verified.test", False, []),
        ("a@dev.test", True, []),
        ("a@dev.test", False, [("domain_not_verified", "/from")]),
        ("a@pending.test", True, [("domain_not_verified", "/from")]),
        ("a@sub.pending.test", False, [("domain_not_verified", "/from")]),
        ("a@elsewhere.test", True, [("sender_not_allowed", "/from")]),
        ("a@notverified.test", False, [("sender_not_allowed", "/from")]),
    ],
)
def test_the_from_check(sender: str, dev_mode: bool, found: list[tuple[str, str]]) -> None:
    assert refusals(sender, dev_mode) == found


def test_the_from_check_comes_first() -> None:
    request = SendRequest.model_validate({"from": "a@pending.test", "to": ["bad"], "text": "x"})
    checked = check_request(request, TENANT.domains, None, NOW, TENANT.sendable_domains(False))
    assert isinstance(checked, list)
    assert checked[0].code == "domain_not_verified"
