"""Reply classification and the verdict on one attempt: deliver, bounce, retry or give up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from deploy.stack.profiles import TEST
from schemas.common import Lane
from schemas.events import Bounce, BounceCategory, MessageState
from schemas.pipeline import Route, SmtpReply
from services.sender.classify import (
    DELIVERY_OUTCOME_UNKNOWN,
    RETRY_WINDOW_EXHAUSTED,
    classify_reply,
    is_route_fault,
    judge,
    outcome_unknown,
    smtp_reply,
)
from tests.unit.sender.jobs import delivery_job

SETTINGS = TEST.settings(retry_base_seconds=10.0, retry_max_seconds=600.0)


@pytest.mark.parametrize(
    ("code", "state"),
    [
        (250, MessageState.DELIVERED),
        (251, MessageState.DELIVERED),
        (421, MessageState.DEFERRED),
        (452, MessageState.DEFERRED),
        (0, MessageState.DEFERRED),
        (550, MessageState.BOUNCED),
        (554, MessageState.BOUNCED),
        (535, MessageState.DEFERRED),  # AUTH refused: the route's login, not the recipient
        (530, MessageState.DEFERRED),
    ],
)
def test_reply_classes(code: int, state: MessageState) -> None:
    assert classify_reply(SmtpReply(code=code, text="x")) is state


def test_enhanced_status_is_split_from_the_text() -> None:
    assert smtp_reply(550, "5.1.1 No such mailbox") == SmtpReply(
        code=550, enhanced_status="5.1.1", text="No such mailbox"
    )
    assert smtp_reply(250, "2.0.0") == SmtpReply(code=250, enhanced_status="2.0.0", text="")
    assert smtp_reply(250, "OK queued as 12") == SmtpReply(code=250, text="OK queued as 12")


def test_bounces_and_deferrals_carry_their_classification() -> None:
    job = delivery_job()
    now = datetime.now(UTC)
    dead = judge(job, smtp_reply(550, "5.1.1 No such mailbox"), now, SETTINGS)
    full = judge(job, smtp_reply(452, "4.2.2 Mailbox full"), now, SETTINGS)
    lost = judge(job, SmtpReply(code=0, text="Connection refused"), now, SETTINGS)
    assert dead.bounce == Bounce(category=BounceCategory.INVALID_RECIPIENT, hard=True)
    assert full.bounce == Bounce(category=BounceCategory.MAILBOX_FULL, hard=False)
    assert lost.bounce == Bounce(category=BounceCategory.OTHER, hard=False)
    assert judge(job, SmtpReply(code=250, text="ok"), now, SETTINGS).bounce is None


def test_delivered_and_bounced_are_final() -> None:
    job = delivery_job()
    now = datetime.now(UTC)
    for code, state in ((250, MessageState.DELIVERED), (550, MessageState.BOUNCED)):
        reply = SmtpReply(code=code, text="x")
        verdict = judge(job, reply, now, SETTINGS)
        assert (verdict.state, verdict.reply, verdict.retry, verdict.problem) == (
            state,
            reply,
            None,
            None,
        )


def test_deferral_inside_the_window_asks_for_the_next_attempt() -> None:
    job = delivery_job(attempt=2, lane=Lane.NORMAL)
    reply = SmtpReply(code=452, enhanced_status="4.2.2", text="Mailbox full")
    now = datetime.now(UTC)
    verdict = judge(job, reply, now, SETTINGS)
    assert verdict.state is MessageState.DEFERRED
    assert verdict.retry is not None
    assert verdict.retry.job == job.model_copy(update={"attempt": 3})
    assert verdict.retry.reply == reply
    assert now + timedelta(seconds=16) <= verdict.retry.due_at <= now + timedelta(seconds=24)


def test_deferral_never_waits_past_the_window() -> None:
    job = delivery_job(retry_for=timedelta(seconds=1))
    verdict = judge(job, SmtpReply(code=0, text="timeout"), datetime.now(UTC), SETTINGS)
    assert verdict.retry is not None
    assert verdict.retry.due_at == job.retry_until


def test_deferral_after_the_window_fails() -> None:
    job = delivery_job(retry_for=timedelta(minutes=5))
    reply = SmtpReply(code=421, enhanced_status="4.7.0", text="slow down")
    verdict = judge(job, reply, job.retry_until, SETTINGS)
    assert verdict.state is MessageState.FAILED
    assert verdict.retry is None
    assert verdict.problem is not None and verdict.problem.code == RETRY_WINDOW_EXHAUSTED
    assert RETRY_WINDOW_EXHAUSTED == "expired"


def test_a_critical_deferral_is_retried_within_seconds() -> None:
    reply = SmtpReply(code=452, enhanced_status="4.2.2", text="Mailbox full")
    now = datetime.now(UTC)
    first = judge(delivery_job(attempt=1), reply, now, SETTINGS)
    late = judge(delivery_job(attempt=12, retry_for=timedelta(hours=2)), reply, now, SETTINGS)
    assert first.retry is not None and first.retry.due_at <= now + timedelta(seconds=6)
    assert late.retry is not None and late.retry.due_at <= now + timedelta(seconds=120)


FALLBACK = Route(name="backup", host="10.0.0.2", port=25, pool="default")
LAST = Route(name="last", host="10.0.0.3", port=25, pool="default")


@pytest.mark.parametrize(
    "reply",
    [
        SmtpReply(code=0, text="ConnectionRefusedError: [Errno 111] Connect call failed"),
        SmtpReply(code=0, text="SMTPConnectTimeoutError: Timed out connecting"),
        SmtpReply(code=421, text="Service not available, closing transmission channel"),
        SmtpReply(code=535, enhanced_status="5.7.8", text="Authentication credentials invalid"),
    ],
)
def test_a_deferral_of_the_route_retries_over_its_fallback(reply: SmtpReply) -> None:
    job = delivery_job(attempt=1).model_copy(update={"fallbacks": [FALLBACK, LAST]})
    assert is_route_fault(reply)
    verdict = judge(job, reply, datetime.now(UTC), SETTINGS)
    assert verdict.state is MessageState.DEFERRED and verdict.retry is not None
    assert (verdict.retry.job.route, verdict.retry.job.fallbacks) == (FALLBACK, [LAST])
    assert verdict.retry.job.attempt == 2


@pytest.mark.parametrize(
    "reply",
    [
        SmtpReply(code=452, enhanced_status="4.2.2", text="Mailbox full"),
        SmtpReply(code=450, enhanced_status="4.7.1", text="Greylisted, try again later"),
        SmtpReply(code=421, enhanced_status="4.7.0", text="Too many messages, slow down"),
    ],
)
def test_a_deferral_of_the_recipient_or_the_rate_stays_on_its_route(reply: SmtpReply) -> None:
    job = delivery_job(attempt=1).model_copy(update={"fallbacks": [FALLBACK]})
    assert not is_route_fault(reply)
    verdict = judge(job, reply, datetime.now(UTC), SETTINGS)
    assert verdict.retry is not None
    assert (verdict.retry.job.route, verdict.retry.job.fallbacks) == (job.route, [FALLBACK])


def test_a_route_fault_without_fallback_stays_on_its_route() -> None:
    job = delivery_job(attempt=1)
    verdict = judge(job, SmtpReply(code=0, text="refused"), datetime.now(UTC), SETTINGS)
    assert verdict.retry is not None and verdict.retry.job.route == job.route


def test_an_interrupted_attempt_fails_without_a_retry() -> None:
    reply = SmtpReply(code=0, text="SMTPReadTimeoutError")
    verdict = outcome_unknown(reply)
    assert (verdict.state, verdict.reply, verdict.retry) == (MessageState.FAILED, reply, None)
    assert verdict.problem is not None and verdict.problem.code == DELIVERY_OUTCOME_UNKNOWN
