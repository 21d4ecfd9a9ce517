"""Which SMTP rejections mean the recipient's address is dead for good."""

from __future__ import annotations

import pytest

from schemas.pipeline import SmtpReply
from services.policy_check.classify import enhanced_status, is_dead_address


@pytest.mark.parametrize("status", ["5.1.1", "5.1.10", "5.2.1", "5.1.2"])
def test_dead_address_statuses(status: str) -> None:
    assert is_dead_address(SmtpReply(code=550, enhanced_status=status, text="no"))


@pytest.mark.parametrize(
    ("code", "status", "text"),
    [
        (550, "5.7.1", "rejected by policy"),  # about the message or sender
        (552, "5.2.2", "mailbox full"),
        (452, "4.2.2", "mailbox full"),
        (421, "4.7.0", "try again later"),
        (550, "4.1.1", "inconsistent reply: the enhanced status wins"),
        (554, None, "transaction failed"),
        (0, None, "connection refused"),
    ],
)
def test_not_dead(code: int, status: str | None, text: str) -> None:
    assert not is_dead_address(SmtpReply(code=code, enhanced_status=status, text=text))


@pytest.mark.parametrize("code", [550, 551, 553])
def test_plain_mailbox_rejections_without_other_cause(code: int) -> None:
    assert is_dead_address(SmtpReply(code=code, text="No such user here"))


@pytest.mark.parametrize(
    "text",
    [
        "Mailbox unavailable, try again later",
        "Temporarily rejected",
        "Greylisted, please retry",
        "Rate limit exceeded",
        "Message rejected as spam",
        "Over quota",
    ],
)
def test_plain_550_with_a_hint_of_another_cause(text: str) -> None:
    assert not is_dead_address(SmtpReply(code=550, text=text))


def test_status_read_from_the_text_when_not_parsed() -> None:
    assert enhanced_status(SmtpReply(code=550, text="5.1.10 Recipient has null MX")) == "5.1.10"
    assert enhanced_status(SmtpReply(code=550, text="550-5.1.1 The email account")) == "5.1.1"
    assert enhanced_status(SmtpReply(code=550, text="user 5.1.1 unknown")) is None
    assert is_dead_address(SmtpReply(code=550, text="5.1.1 <bob@x.test>: try again never"))
    assert not is_dead_address(SmtpReply(code=550, text="5.7.1 Service unavailable"))


def test_uninformative_5_0_0_falls_back_to_code_and_text() -> None:
    assert is_dead_address(SmtpReply(code=550, enhanced_status="5.0.0", text="User unknown"))
    assert not is_dead_address(SmtpReply(code=554, enhanced_status="5.0.0", text="User unknown"))
