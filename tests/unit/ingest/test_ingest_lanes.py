"""The lane a request gets, and the critical lane's per-tenant rate cap."""

from __future__ import annotations

from typing import Any

from libs.tenants import Tenant
from schemas.common import Lane
from schemas.send import SendRequest
from services.ingest.lanes import CriticalRateCap, choose_lane


def tenant(name: str = "a", **limits: Any) -> Tenant:
    return Tenant(id=f"tenant-{name}", name=name, domains=("example.test",), **limits)


def request(recipients: int = 1, **fields: Any) -> SendRequest:
    body = {"from": "a@example.test", "to": [f"u{i}@example.org" for i in range(recipients)]}
    return SendRequest.model_validate(body | fields)


def test_security_mail_beyond_the_tenant_rate_goes_high_and_others_keep_theirs() -> None:
    cap = CriticalRateCap()
    flooder, other = tenant("a", critical_burst=3, critical_per_second=1.0), tenant("b")
    otp = request(category="otp")
    lanes = [choose_lane(otp, flooder, cap, now=100.0).lane for _ in range(5)]
    assert lanes == [Lane.CRITICAL] * 3 + [Lane.HIGH] * 2
    assert choose_lane(otp, other, cap, now=100.0).lane is Lane.CRITICAL
    assert "critical-lane rate" in choose_lane(otp, flooder, cap, now=100.0).reason


def test_the_allowance_refills_with_time() -> None:
    cap = CriticalRateCap()
    flooder = tenant(critical_burst=2, critical_per_second=10.0)
    otp = request(category="otp")
    assert [choose_lane(otp, flooder, cap, now=0.0).lane for _ in range(3)][-1] is Lane.HIGH
    assert choose_lane(otp, flooder, cap, now=0.1).lane is Lane.CRITICAL


def test_a_request_takes_one_token_per_recipient() -> None:
    cap = CriticalRateCap()
    flooder = tenant(critical_burst=3)
    assert choose_lane(request(4, category="otp"), flooder, cap, now=0.0).lane is Lane.HIGH
    assert choose_lane(request(3, category="otp"), flooder, cap, now=0.0).lane is Lane.CRITICAL


def test_nobody_buys_the_critical_lane_with_priority() -> None:
    cap = CriticalRateCap()
    bold = tenant(priority_ceiling=Lane.CRITICAL)
    broadcast = request(stream="broadcast", priority="critical")
    assert choose_lane(broadcast, bold, cap).lane is Lane.BULK
    assert choose_lane(request(priority="critical"), bold, cap).lane is Lane.HIGH
    assert (
        choose_lane(request(priority="critical"), tenant(priority_ceiling=Lane.NORMAL), cap).lane
        is Lane.NORMAL
    )
