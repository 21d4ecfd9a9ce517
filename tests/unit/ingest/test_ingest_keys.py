"""API keys' pure decisions: the last admin key, what a key may send, the send rate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from libs.keys import ApiKey, KeySettings, Scope, keeps_an_admin
from libs.tenants import Caller, Tenant
from schemas.common import Mailbox, Stream
from services.ingest.limits import SendRateLimits
from services.ingest.permission import key_refusal
from services.ingest.problems import ProblemError

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def key(key_id: str = "k1", **settings: Any) -> ApiKey:
    lifetime = {n: settings.pop(n) for n in ("expires_at", "revoked_at") if n in settings}
    return ApiKey(
        id=key_id,
        tenant_id="t1",
        prefix="sx_abcde",
        settings=KeySettings(**settings),
        created_at=NOW - timedelta(days=1),
        expires_at=lifetime.get("expires_at"),
        revoked_at=lifetime.get("revoked_at"),
        last_used_at=None,
    )


def sender(address: str) -> Mailbox:
    return Mailbox(address=address)


def test_a_key_is_usable_until_revoked_or_expired() -> None:
    assert key().usable(NOW)
    assert not key(revoked_at=NOW - timedelta(seconds=1)).usable(NOW)
    assert not key(expires_at=NOW).usable(NOW)
    assert key(expires_at=NOW + timedelta(seconds=1)).usable(NOW)


def test_the_last_lasting_admin_key_cannot_be_revoked_or_narrowed() -> None:
    admin, sender_only = key("a"), key("s", scopes=frozenset({Scope.SEND}))
    keys = [admin, sender_only]
    revoked = key("a", revoked_at=NOW)
    narrowed = key("a", scopes=frozenset({Scope.SEND, Scope.READ}))
    assert not keeps_an_admin(keys, revoked, NOW)
    assert not keeps_an_admin(keys, narrowed, NOW)
    assert keeps_an_admin(keys, key("a", name="renamed"), NOW)
    assert keeps_an_admin(keys, key("s", revoked_at=NOW), NOW)


def test_an_admin_key_in_its_rotation_overlap_does_not_count_as_the_last_one() -> None:
    rotated_out = key("old", expires_at=NOW + timedelta(hours=24))
    replacement = key("new")
    keys = [rotated_out, replacement]
    assert not keeps_an_admin(keys, key("new", revoked_at=NOW), NOW)
    assert keeps_an_admin(keys, key("old", revoked_at=NOW), NOW)
    assert keeps_an_admin([*keys, key("other")], key("new", revoked_at=NOW), NOW)


def test_a_tenant_without_a_lasting_admin_key_may_still_change_its_keys() -> None:
    expiring = key("old", expires_at=NOW + timedelta(hours=1))
    assert keeps_an_admin([expiring], key("old", revoked_at=NOW), NOW)


def test_an_unrestricted_key_or_no_key_may_send_anything_of_its_tenant() -> None:
    assert key_refusal(key(), sender("a@anything.test"), Stream.BROADCAST) is None
    assert key_refusal(None, sender("a@anything.test"), Stream.BROADCAST) is None


def test_a_key_restricted_to_domains_sends_from_them_and_their_subdomains_only() -> None:
    restricted = key(domains=("mail.example.test",))
    assert key_refusal(restricted, sender("a@mail.example.test"), Stream.TRANSACTIONAL) is None
    assert key_refusal(restricted, sender("a@eu.mail.example.test"), Stream.TRANSACTIONAL) is None
    refusal = key_refusal(restricted, sender("a@example.test"), Stream.TRANSACTIONAL)
    assert refusal is not None
    assert (refusal.code, refusal.pointer) == ("key_not_permitted", "/from")
    assert "example.test" in refusal.detail
    assert ProblemError.of([refusal]).status == 403


def test_a_key_restricted_to_streams_sends_in_them_only() -> None:
    restricted = key(streams=(Stream.TRANSACTIONAL,))
    assert key_refusal(restricted, sender("a@x.test"), Stream.TRANSACTIONAL) is None
    refusal = key_refusal(restricted, sender("a@x.test"), Stream.BROADCAST)
    assert refusal is not None
    assert (refusal.code, refusal.pointer) == ("key_not_permitted", "/stream")


def caller(tenant_rate: float = 10.0, tenant_burst: int = 20, **key_settings: Any) -> Caller:
    tenant = Tenant(
        id="t1",
        name="t",
        domains=("x.test",),
        rate_per_second=tenant_rate,
        rate_burst=tenant_burst,
    )
    return Caller(tenant, key(**key_settings))


def test_the_tenant_rate_admits_its_burst_then_says_when_to_retry() -> None:
    limits, who = SendRateLimits(), caller(tenant_rate=10.0, tenant_burst=20)
    assert limits.retry_after(who, 20, now=0.0) == 0
    assert limits.retry_after(who, 1, now=0.0) == 1
    assert limits.retry_after(who, 15, now=0.0) == 2  # 1.5 s rounded up: an integer header
    assert limits.retry_after(who, 10, now=1.0) == 0


def test_a_refusal_spends_nothing_and_a_key_rate_binds_within_the_tenant_rate() -> None:
    limits = SendRateLimits()
    slow = caller(tenant_rate=100.0, tenant_burst=100, rate_per_second=1.0, rate_burst=2)
    assert limits.retry_after(slow, 2, now=0.0) == 0
    assert limits.retry_after(slow, 1, now=0.0) == 1
    other_key = Caller(slow.tenant, key("k2"))
    assert limits.retry_after(other_key, 98, now=0.0) == 0  # the refusal took none of the 98


def test_a_batch_larger_than_the_burst_waits_for_a_full_bucket_and_leaves_a_debt() -> None:
    limits, who = SendRateLimits(), caller(tenant_rate=10.0, tenant_burst=20)
    assert limits.retry_after(who, 50, now=0.0) == 0
    assert limits.retry_after(who, 1, now=2.0) == 2  # 30 tokens owed, 20 refilled: 1.1 s more
    assert limits.retry_after(who, 1, now=3.1) == 0


def test_every_503_says_when_to_retry() -> None:
    assert ProblemError.unavailable("down").headers["Retry-After"].isdigit()
    assert ProblemError("not_ready", "starting").headers["Retry-After"].isdigit()
    assert "Retry-After" not in ProblemError("not_found", "no").headers
