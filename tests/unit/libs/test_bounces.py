"""The one bounce classifier: categories, hard or soft, and the status codes in reply text."""

from __future__ import annotations

import pytest

from libs.bounces import (
    RULES,
    Classification,
    Context,
    classify,
    find_reply_code,
    find_status,
    load_rules,
    reply_bounce,
    split_status,
)
from schemas.events import Bounce, BounceCategory
from schemas.pipeline import SmtpReply

C = BounceCategory


@pytest.mark.parametrize("status", ["5.1.1", "5.1.10", "5.2.1", "5.1.2", "5.1.3", "5.1.6"])
def test_dead_address_statuses_are_hard(status: str) -> None:
    assert classify(550, status, "no").hard


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
    assert not classify(code, status, text).hard


@pytest.mark.parametrize("code", [550, 551, 553])
def test_plain_mailbox_rejections_without_other_cause(code: int) -> None:
    assert classify(code, None, "No such user here") == Classification(C.INVALID_RECIPIENT, True)
    assert classify(code, None, "Mailbox unavailable").hard


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
    assert not classify(550, None, text).hard


def test_uninformative_5_0_0_falls_back_to_code_and_words() -> None:
    assert classify(550, "5.0.0", "User unknown").hard
    assert classify(554, "5.0.0", "User unknown").hard  # the words say it
    assert not classify(554, "5.0.0", "Transaction failed").hard


PROVIDER_REPLIES = [
    (
        "550 5.1.1 The email account that you tried to reach does not exist.",  # Gmail
        C.INVALID_RECIPIENT,
        True,
    ),
    ("550 5.5.0 Requested action not taken: mailbox unavailable", C.INVALID_RECIPIENT, True),
    (
        "554 delivery error: dd This user doesn't have a yahoo.com account",
        C.INVALID_RECIPIENT,
        True,
    ),
    ("550 Host or domain name not found", C.BAD_DOMAIN, True),
    ("556 5.1.10 Recipient address has null MX", C.BAD_DOMAIN, True),
    ("552 Mailbox full", C.MAILBOX_FULL, False),
    ("452 4.2.2 The email account that you tried to reach is over quota", C.MAILBOX_FULL, False),
    ("554 5.7.1 Client host blocked using zen.spamhaus.org", C.SPAM_BLOCK, False),
    ("550 5.7.1 this message is likely unsolicited mail", C.SPAM_BLOCK, False),
    ("421 4.7.0 Too many connections from your IP, try again later", C.THROTTLING, False),
    ("451 4.7.1 Rate limited: please try again slower", C.THROTTLING, False),
    ("421 4.7.0 Too many messages, slow down and try again later", C.THROTTLING, False),
    ("550 5.7.26 Unauthenticated email is not accepted due to DMARC", C.AUTH_FAILURE, False),
    ("550 5.2.1 The email account that you tried to reach is disabled", C.INVALID_RECIPIENT, False),
    ("550 5.2.1 The user is receiving mail at a rate that prevents more", C.THROTTLING, False),
    ("554 5.6.0 Conversion failed", C.POLICY, False),
    ("451 4.3.0 Temporary local problem", C.OTHER, False),
]


@pytest.mark.parametrize(("reply", "category", "hard"), PROVIDER_REPLIES)
def test_categories_from_status_and_provider_texts(
    reply: str, category: BounceCategory, hard: bool
) -> None:
    code, _, text = reply.partition(" ")
    status, text = split_status(text)
    assert classify(int(code), status, text) == Classification(category, hard)


def test_a_no_such_user_to_the_message_itself_is_a_filter_not_a_dead_address() -> None:
    after_data = "550 User unknown (in reply to end of DATA command)"
    assert classify(550, None, after_data) == Classification(C.POLICY, False)
    assert classify(550, "5.1.1", after_data).hard  # a dead-address status still says it
    at_rcpt = classify(550, "5.7.1", "User unknown", Context(">>> RCPT To:<bob@example.test>"))
    assert at_rcpt.hard
    assert not classify(550, "5.7.1", "Recipient address rejected: User unknown").hard


def test_a_text_bounce_must_name_the_command_for_a_dead_address() -> None:
    text_bounce = Context("The following address failed: bob@example.test", command_required=True)
    assert not classify(550, None, "550 User unknown", text_bounce).hard
    assert classify(550, None, "550 User unknown (in reply to RCPT TO)", text_bounce).hard
    assert classify(550, "5.1.1", "550 User unknown", text_bounce).hard
    assert classify(550, None, "550 User unknown").hard  # a reply on its own answered RCPT


def test_a_temporary_failure_is_never_hard() -> None:
    assert classify(450, "4.1.1", "User unknown") == Classification(C.INVALID_RECIPIENT, False)
    assert not classify(None, None, "user unknown; temporary failure, will retry").hard


def test_status_codes_in_reply_text() -> None:
    assert split_status("5.1.1 No such mailbox") == ("5.1.1", "No such mailbox")
    assert split_status("550-5.1.1 The email account") == ("5.1.1", "The email account")
    assert split_status("2.0.0") == ("2.0.0", "")
    assert split_status("user 5.1.1 unknown") == (None, "user 5.1.1 unknown")
    assert find_status("smtp; 550 5.0.0 <a@b.test>... 5.1.1 User unknown") == "5.1.1"
    assert find_status("host 192.0.2.1 said: 550 Host unknown") is None
    assert find_status("Status: 4.4.7, then 421 4.4.2 timed out") == "4.4.2"
    assert find_status("server v4.5.1 crashed") is None
    assert find_status("#5.1.351 Remote server returned") == "5.1.351"


def test_reply_codes_in_reply_text() -> None:
    assert find_reply_code("host mx said: 550 5.1.1 unknown") == 550
    assert find_reply_code("Out: 250 2.1.5 Ok In: DATA Out: 451 4.3.0 Error") == 451
    assert find_reply_code("Out: 250 2.6.0 Ok", status="2.6.0") == 250
    assert find_reply_code("Size (in bytes): 222") is None
    assert find_reply_code("<<< 550-Mailbox unavailable") == 550


def test_the_reply_bounce_of_the_sender() -> None:
    assert reply_bounce(SmtpReply(code=0, text="Connection refused: blocked")) == Bounce(
        category=C.OTHER, hard=False
    )
    assert reply_bounce(SmtpReply(code=550, enhanced_status="5.1.1", text="no")) == Bounce(
        category=C.INVALID_RECIPIENT, hard=True
    )


def test_the_rule_table_is_whole() -> None:
    assert load_rules() == RULES
    names = {rule.name for rule in RULES}
    assert len(names) == len(RULES)
    for rule in RULES:
        assert set(rule.status_yields_to) <= names
        assert rule.after_data is None or rule.after_data in names
        assert all(phrase == phrase.lower() and phrase for phrase in rule.phrases)
    hard = {rule.category for rule in RULES if rule.hard}
    assert hard == {C.INVALID_RECIPIENT, C.BAD_DOMAIN}
