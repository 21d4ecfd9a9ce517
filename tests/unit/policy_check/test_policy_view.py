"""The in-process map of suppressed addresses: exact answers, compact, changes merged."""

from __future__ import annotations

from datetime import UTC, datetime

from libs.suppressions import Suppression, SuppressionReason
from schemas.common import Lane, Stream
from services.policy_check.view import SuppressedAddresses, SuppressionView
from tests.records import message_spec

NOW = datetime(2026, 1, 1, tzinfo=UTC)
R = SuppressionReason


def one(address: str, stream: Stream, reason: R, expires_at: datetime | None = None) -> Suppression:
    return Suppression("t-1", address, stream, reason, expires_at=expires_at)


def test_every_address_added_is_found_with_its_streams_and_reasons_and_no_other() -> None:
    addresses = SuppressedAddresses()
    addresses.add(
        one(f"user{i}@example.test", Stream.BROADCAST, R.UNSUBSCRIBE) for i in range(3000)
    )
    addresses.add([one("user7@example.test", Stream.TRANSACTIONAL, R.COMPLAINT)])
    addresses.compact()
    addresses.add([one("new@example.test", Stream.TRANSACTIONAL, R.MANUAL, NOW)])
    assert len(addresses.hashes) == 3000 and addresses.nbytes == 3000 * 10
    found = {(s.stream, s.reason) for s in addresses.suppressions(("t-1", "user7@example.test"))}
    assert found == {(Stream.BROADCAST, R.UNSUBSCRIBE), (Stream.TRANSACTIONAL, R.COMPLAINT)}
    [new] = addresses.suppressions(("t-1", "new@example.test"))
    assert new.expires_at == NOW
    assert addresses.suppressions(("t-2", "user7@example.test")) == []
    assert not any(addresses.mask(hash(("t-1", f"other{i}@example.test"))) for i in range(3000))


def test_replacing_an_address_state_drops_what_was_removed() -> None:
    addresses = SuppressedAddresses()
    key = ("t-1", "a@example.test")
    addresses.add([one(key[1], s, R.HARD_BOUNCE) for s in Stream])
    addresses.compact()
    addresses.replace(key, [one(key[1], Stream.BROADCAST, R.HARD_BOUNCE)])
    assert [s.stream for s in addresses.suppressions(key)] == [Stream.BROADCAST]
    addresses.replace(key, [])
    addresses.compact()
    assert addresses.suppressions(key) == [] and len(addresses.hashes) == 0


def test_the_view_decides_from_memory() -> None:
    view = SuppressionView(pool=None, poll_seconds=1.0)  # type: ignore[arg-type]
    view.learned([one("hostile@example.test", s, R.COMPLAINT) for s in Stream])
    otp = message_spec(tenant_id="t-1", recipient="Hostile@Example.test", lane=Lane.CRITICAL)
    notice = message_spec(tenant_id="t-1", recipient="hostile@example.test")
    stranger = message_spec(tenant_id="t-1", recipient="friend@example.test")
    problems = view.problems([otp, notice, stranger], NOW)
    assert [p.code if p else None for p in problems] == [None, "suppressed_complaint", None]
