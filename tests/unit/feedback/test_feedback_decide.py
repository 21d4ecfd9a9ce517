"""What the feedback listener makes of a report about a message: events, or why nothing."""

from __future__ import annotations

import uuid

import pytest

from libs.feedback_report import FeedbackKind, FeedbackReport, RecipientReport
from libs.message_tokens import Purpose, sign
from libs.verp import return_path
from schemas.events import BounceCategory, MessageState
from services.feedback.decide import (
    NO_SUCH_ADDRESS,
    Feedback,
    Ignored,
    LoggedMessage,
    addressed,
    judge_report,
    rcpt_reply,
)

BOUNCES = "bounces@sendarix.test"
MESSAGE = LoggedMessage(str(uuid.uuid4()), "user@example.com")
KEY = b"k"


def recipient(
    address: str = "User@Example.com",
    action: str | None = "failed",
    status: str | None = "5.1.1",
    reply_code: int | None = 550,
    category: BounceCategory | None = BounceCategory.INVALID_RECIPIENT,
    hard: bool = True,
) -> RecipientReport:
    return RecipientReport(address, action, status, reply_code, "no such user", category, hard)


def report(
    kind: FeedbackKind = FeedbackKind.BOUNCE,
    recipients: tuple[RecipientReport, ...] = (recipient(),),
    original_message_id: str | None = None,
    headers: dict[str, str] | None = None,
    feedback_type: str | None = None,
) -> FeedbackReport:
    return FeedbackReport(kind, recipients, feedback_type, original_message_id, headers or {})


def test_a_hard_bounce_is_bounced_async_with_its_reply() -> None:
    verdict = judge_report(report(original_message_id=f"{MESSAGE.message_id}@acme.test"), MESSAGE)
    assert isinstance(verdict, Feedback) and verdict.state is MessageState.BOUNCED
    assert verdict.bounce is not None
    assert verdict.bounce.model_dump() == {
        "category": "invalid_recipient",
        "hard": True,
        "async": True,
    }
    assert verdict.smtp is not None
    assert (verdict.smtp.code, verdict.smtp.enhanced_status) == (550, "5.1.1")


def test_a_delay_is_delayed_and_never_hard() -> None:
    delayed = recipient(action="delayed", status="4.4.7", reply_code=None, hard=False)
    verdict = judge_report(report(FeedbackKind.DELAY, (delayed,)), MESSAGE)
    assert isinstance(verdict, Feedback) and verdict.state is MessageState.DELAYED
    assert verdict.bounce is not None and not verdict.bounce.hard and verdict.bounce.is_async
    assert verdict.smtp is not None and verdict.smtp.code == 450  # from the status class


def test_a_failure_without_a_category_is_other() -> None:
    verdict = judge_report(report(recipients=(recipient(category=None, status=None),)), MESSAGE)
    assert isinstance(verdict, Feedback) and verdict.bounce is not None
    assert verdict.bounce.category is BounceCategory.OTHER


def test_a_complaint_is_complained_with_its_feedback_type() -> None:
    arf = report(FeedbackKind.COMPLAINT, (), feedback_type="abuse")
    assert judge_report(arf, MESSAGE) == Feedback(MessageState.COMPLAINED, feedback_type="abuse")
    redacted = report(FeedbackKind.COMPLAINT, (), feedback_type=None)
    assert judge_report(redacted, MESSAGE) == Feedback(
        MessageState.COMPLAINED, feedback_type="abuse"
    )


@pytest.mark.parametrize(
    ("read", "ignored"),
    [
        (report(FeedbackKind.AUTO_REPLY, ()), Ignored.AUTO_REPLY),
        (report(FeedbackKind.OTHER, ()), Ignored.UNREADABLE),
        (report(recipients=()), Ignored.UNREADABLE),  # a bounce that names no recipient
        (report(recipients=(recipient("someone@else.test"),)), Ignored.OTHER_RECIPIENT),
        (
            report(FeedbackKind.COMPLAINT, (recipient("someone@else.test", None),)),
            Ignored.OTHER_RECIPIENT,
        ),
        (report(original_message_id=f"{uuid.uuid4()}@acme.test"), Ignored.OTHER_MESSAGE),
        (report(headers={"x-sendarix-message-id": str(uuid.uuid4())}), Ignored.OTHER_MESSAGE),
        (report(recipients=(recipient(action="delivered", status="2.0.0"),)), Ignored.NO_FAILURE),
        (report(recipients=(recipient(action="relayed"),)), Ignored.NO_FAILURE),
    ],
)
def test_what_changes_nothing(read: FeedbackReport, ignored: Ignored) -> None:
    assert judge_report(read, MESSAGE) is ignored


def test_the_original_may_name_the_message_in_its_header_in_any_case() -> None:
    headers = {"x-sendarix-message-id": MESSAGE.message_id.upper()}
    assert isinstance(judge_report(report(headers=headers), MESSAGE), Feedback)


def test_only_token_addresses_of_the_bounce_domain_exist() -> None:
    tenant = str(uuid.uuid4())
    verp = return_path(KEY, tenant, MESSAGE.message_id, BOUNCES)
    unsub_token = sign(KEY, Purpose.UNSUBSCRIBE, tenant, MESSAGE.message_id, "broadcast")
    unsub = f"unsub+{unsub_token}@sendarix.test"
    assert rcpt_reply(verp, BOUNCES).startswith("250")
    assert rcpt_reply(verp.upper(), BOUNCES).startswith("250")
    assert rcpt_reply(unsub, BOUNCES).startswith("250")
    for other in ("bounces@sendarix.test", "postmaster@sendarix.test", verp + ".evil.test"):
        assert rcpt_reply(other, BOUNCES) == NO_SUCH_ADDRESS
    target = addressed(verp, BOUNCES)
    assert target is not None and target.purpose is Purpose.RETURN_PATH
    target = addressed(unsub, BOUNCES)
    assert target is not None and target.purpose is Purpose.UNSUBSCRIBE


def test_return_paths_may_point_at_the_security_pools_domain_too() -> None:
    tenant = str(uuid.uuid4())
    verp = return_path(KEY, tenant, MESSAGE.message_id, BOUNCES, "otp-bounces.sendarix.test")
    assert verp.endswith("@otp-bounces.sendarix.test")
    assert rcpt_reply(verp, BOUNCES) == NO_SUCH_ADDRESS
    assert rcpt_reply(verp, BOUNCES, ("", "otp-bounces.sendarix.test")).startswith("250")
    target = addressed(verp, BOUNCES, ("otp-bounces.sendarix.test",))
    assert target is not None and target.purpose is Purpose.RETURN_PATH
    unsub_token = sign(KEY, Purpose.UNSUBSCRIBE, tenant, MESSAGE.message_id, "broadcast")
    unsub = f"unsub+{unsub_token}@otp-bounces.sendarix.test"
    assert addressed(unsub, BOUNCES, ("otp-bounces.sendarix.test",)) is None
