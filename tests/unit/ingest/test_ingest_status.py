"""The recorder's status rule: never backwards, terminal is final, feedback after delivery."""

from __future__ import annotations

import pytest

from schemas.events import MessageState as S
from services.ingest.status import FEEDBACK, PROGRESS, next_status


def test_the_first_event_sets_the_status() -> None:
    for state in S:
        assert next_status(None, state) is state


def test_every_state_on_the_way_has_a_rank() -> None:
    on_the_way = {s for s in S if not s.terminal and s not in FEEDBACK}
    assert on_the_way == set(PROGRESS)


@pytest.mark.parametrize(
    ("current", "incoming", "expected"),
    [
        (S.ACCEPTED, S.RENDERED, S.RENDERED),
        (S.RENDERED, S.ACCEPTED, S.RENDERED),  # accepted reported after render's event
        (S.ROUTED, S.DEFERRED, S.DEFERRED),
        (S.DEFERRED, S.DEFERRED, S.DEFERRED),
        (S.DEFERRED, S.ROUTED, S.DEFERRED),
        (S.DEFERRED, S.DELIVERED, S.DELIVERED),
        (S.ACCEPTED, S.REJECTED, S.REJECTED),
        (S.RENDERED, S.SUPPRESSED, S.SUPPRESSED),
        (S.DEFERRED, S.BOUNCED, S.BOUNCED),
        (S.ROUTED, S.FAILED, S.FAILED),
        (S.DELIVERED, S.DEFERRED, S.DELIVERED),
        (S.DELIVERED, S.BOUNCED, S.BOUNCED),  # a DSN after the 250
        (S.DELIVERED, S.DELAYED, S.DELIVERED),
        (S.ROUTED, S.DELAYED, S.DELAYED),
        (S.BOUNCED, S.COMPLAINED, S.BOUNCED),
        (S.DELIVERED, S.FAILED, S.DELIVERED),
        (S.BOUNCED, S.DELIVERED, S.BOUNCED),
        (S.FAILED, S.ACCEPTED, S.FAILED),
        (S.DEFERRED, S.CANCELLED, S.CANCELLED),
        (S.ACCEPTED, S.CANCELLED, S.CANCELLED),
        (S.CANCELLED, S.ROUTED, S.CANCELLED),  # an in-flight stage reports after the cancel
        (S.CANCELLED, S.RENDERED, S.CANCELLED),
        (S.SUPPRESSED, S.COMPLAINED, S.SUPPRESSED),
        (S.DELIVERED, S.COMPLAINED, S.COMPLAINED),
        (S.DELIVERED, S.UNSUBSCRIBED, S.UNSUBSCRIBED),
        (S.COMPLAINED, S.UNSUBSCRIBED, S.UNSUBSCRIBED),
        (S.COMPLAINED, S.DELIVERED, S.COMPLAINED),
        (S.UNSUBSCRIBED, S.DEFERRED, S.UNSUBSCRIBED),
        (S.ROUTED, S.COMPLAINED, S.COMPLAINED),
        (S.RENDERED, S.HELD, S.HELD),
        (S.HELD, S.RENDERED, S.HELD),
        (S.HELD, S.ROUTED, S.ROUTED),  # released
        (S.ROUTED, S.HELD, S.ROUTED),
        (S.HELD, S.CANCELLED, S.CANCELLED),
        (S.HELD, S.FAILED, S.FAILED),  # hold_expired
        (S.RENDERED, S.BLOCKED, S.BLOCKED),
        (S.BLOCKED, S.ROUTED, S.BLOCKED),
    ],
)
def test_transitions(current: S, incoming: S, expected: S) -> None:
    assert next_status(current, incoming) is expected
