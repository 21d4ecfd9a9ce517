"""Simulator decisions: which mailbox an address is, and what it answers on each attempt."""

from __future__ import annotations

import pytest

from deploy.simulator.behaviour import (
    ACCEPTED,
    MAILBOX_FULL,
    NO_SUCH_MAILBOX,
    THROTTLED,
    Behaviour,
    FollowUp,
    behaviour_for,
    data_reply,
    follow_up,
    rcpt_delay,
    rcpt_reply,
)
from deploy.simulator.server import AttemptCounter

DOMAIN = "simulator.sendarix.test"


@pytest.mark.parametrize(
    ("address", "behaviour"),
    [
        ("success@simulator.sendarix.test", Behaviour.SUCCESS),
        ("success+otp-42@simulator.sendarix.test", Behaviour.SUCCESS),
        ("Bounce@Simulator.Sendarix.Test", Behaviour.BOUNCE),
        ("SOFTBOUNCE+x+y@simulator.sendarix.test", Behaviour.SOFTBOUNCE),
        ("<throttle@simulator.sendarix.test>", Behaviour.THROTTLE),
        ("complaint+a@simulator.sendarix.test", Behaviour.COMPLAINT),
        ("ooto@simulator.sendarix.test", Behaviour.OOTO),
        ("slow+1@simulator.sendarix.test", Behaviour.SLOW),
        ("nobody@simulator.sendarix.test", Behaviour.UNKNOWN),
        ("successful@simulator.sendarix.test", Behaviour.UNKNOWN),
        ("success@example.test", Behaviour.UNKNOWN),
        ("success@sub.simulator.sendarix.test", Behaviour.UNKNOWN),
        ("not-an-address", Behaviour.UNKNOWN),
    ],
)
def test_address_to_behaviour(address: str, behaviour: Behaviour) -> None:
    assert behaviour_for(address, DOMAIN) is behaviour


@pytest.mark.parametrize(
    ("behaviour", "reply"),
    [
        (Behaviour.SUCCESS, ACCEPTED),
        (Behaviour.BOUNCE, NO_SUCH_MAILBOX),
        (Behaviour.SOFTBOUNCE, MAILBOX_FULL),
        (Behaviour.UNKNOWN, NO_SUCH_MAILBOX),
        (Behaviour.THROTTLE, ACCEPTED),
        (Behaviour.COMPLAINT, ACCEPTED),
        (Behaviour.OOTO, ACCEPTED),
        (Behaviour.SLOW, ACCEPTED),
    ],
)
def test_rcpt_replies(behaviour: Behaviour, reply: object) -> None:
    assert rcpt_reply(behaviour) == reply


def test_reply_lines_carry_code_and_enhanced_status() -> None:
    assert str(NO_SUCH_MAILBOX).startswith("550 5.1.1 ")
    assert str(MAILBOX_FULL).startswith("452 4.2.2 ")
    assert str(THROTTLED).startswith("421 4.7.0 ")
    assert str(ACCEPTED).startswith("250 ")


def test_throttle_turns_away_the_first_three_attempts() -> None:
    replies = [data_reply(Behaviour.THROTTLE, attempt) for attempt in range(1, 6)]
    assert replies == [THROTTLED, THROTTLED, THROTTLED, ACCEPTED, ACCEPTED]


def test_other_mailboxes_accept_data_at_once() -> None:
    accepting = set(Behaviour) - {Behaviour.THROTTLE}
    assert all(data_reply(b, 1) == ACCEPTED for b in accepting)


def test_only_slow_outlasts_the_sender_timeout() -> None:
    assert rcpt_delay(Behaviour.SLOW, 30.0) > 30.0
    assert all(rcpt_delay(b, 30.0) == 0.0 for b in set(Behaviour) - {Behaviour.SLOW})


def test_follow_ups() -> None:
    assert follow_up(Behaviour.COMPLAINT) is FollowUp.COMPLAINT
    assert follow_up(Behaviour.OOTO) is FollowUp.AUTO_REPLY
    assert all(follow_up(b) is None for b in set(Behaviour) - {Behaviour.COMPLAINT, Behaviour.OOTO})


def test_attempts_are_counted_per_message_and_the_oldest_forgotten() -> None:
    counter = AttemptCounter(capacity=2)
    assert [counter.record("<a>"), counter.record("<a>"), counter.record("<b>")] == [1, 2, 1]
    counter.record("<a>")  # <a> is now the most recent
    counter.record("<c>")
    assert (counter["<a>"], counter["<b>"], counter["<c>"]) == (3, 0, 1)
