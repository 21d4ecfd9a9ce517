"""The mailbox simulator over real SMTP: replies, its mailbox log, and follow-ups via Mailpit."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import pytest

from deploy.simulator.server import MailboxSimulator
from libs.settings import Settings
from tests.support import eventually, started

pytestmark = pytest.mark.integration

DOMAIN = "simulator.sendarix.test"


@pytest.fixture
async def simulator(settings: Settings, tmp_path: Path) -> AsyncIterator[MailboxSimulator]:
    async with started(
        MailboxSimulator(
            settings.model_copy(
                update={"simulator_port": 0, "simulator_log": tmp_path / "new" / "mailbox.jsonl"}
            )
        )
    ) as running:
        yield running


def original(rcpt: str) -> tuple[EmailMessage, str]:
    """A message to ``rcpt`` and an envelope sender of its own, outside the bounce domain (its
    follow-ups go to Mailpit; the feedback listener's tests send to the bounce domain)."""
    message_id = str(uuid.uuid4())
    message = EmailMessage()
    message["From"] = "app@example.test"
    message["To"] = rcpt
    message["Subject"] = f"Simulator test {message_id}"
    message["Message-ID"] = f"<{message_id}@example.test>"
    message.set_content("Your code is 123456")
    return message, f"bounces+{message_id}@app.example.test"


async def send(simulator: MailboxSimulator, message: EmailMessage, mail_from: str) -> Any:
    return await aiosmtplib.send(
        message, sender=mail_from, hostname="127.0.0.1", port=simulator.port, timeout=5
    )


def log_entries(simulator: MailboxSimulator) -> list[dict[str, Any]]:
    return [json.loads(line) for line in simulator.settings.simulator_log.read_text().splitlines()]


async def mailpit_message(settings: Settings, to: str) -> EmailMessage:
    """The one message Mailpit received for ``to``, parsed from its raw source."""
    api = f"{settings.mailpit_ui_url}/api/v1"
    async with httpx.AsyncClient() as client:

        async def found() -> str | None:
            result = (await client.get(f"{api}/search", params={"query": f"to:{to}"})).json()
            return result["messages"][0]["ID"] if result["messages"] else None

        mailpit_id = await eventually(found, timeout=10)
        raw = (await client.get(f"{api}/message/{mailpit_id}/raw")).content
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


async def test_accepted_mail_is_logged_once_per_copy(simulator: MailboxSimulator) -> None:
    message, mail_from = original(f"success+log@{DOMAIN}")
    await send(simulator, message, mail_from)
    bounced, bounce_from = original(f"bounce@{DOMAIN}")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await send(simulator, bounced, bounce_from)

    [entry] = log_entries(simulator)
    assert entry["message_id"] == message["Message-ID"]
    assert (entry["rcpt"], entry["mail_from"]) == (f"success+log@{DOMAIN}", mail_from)
    assert entry["size"] > 0 and entry["received_at"]


async def test_throttle_accepts_the_fourth_attempt_of_a_message(
    simulator: MailboxSimulator,
) -> None:
    message, mail_from = original(f"Throttle@{DOMAIN}")
    for _ in range(3):
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await send(simulator, message, mail_from)
        assert (refused.value.code, refused.value.message[:5]) == (421, "4.7.0")
    await send(simulator, message, mail_from)
    assert len(log_entries(simulator)) == 1


async def test_complaint_sends_a_feedback_report_to_the_envelope_sender(
    simulator: MailboxSimulator, settings: Settings
) -> None:
    message, mail_from = original(f"complaint+fbl@{DOMAIN}")
    await send(simulator, message, mail_from)

    report = await mailpit_message(settings, mail_from)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "feedback-report"
    _, feedback, headers = report.iter_parts()
    assert feedback.get_content_type() == "message/feedback-report"
    fields = feedback.get_payload(0)  # RFC 5965 fields parse as one header block
    assert isinstance(fields, Message)
    assert fields["Feedback-Type"] == "abuse"
    assert fields["Original-Mail-From"] == f"<{mail_from}>"
    assert f"Message-ID: {message['Message-ID']}" in headers.get_content()


async def test_out_of_office_answers_with_an_auto_reply(
    simulator: MailboxSimulator, settings: Settings
) -> None:
    message, mail_from = original(f"ooto@{DOMAIN}")
    await send(simulator, message, mail_from)

    reply = await mailpit_message(settings, mail_from)
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["In-Reply-To"] == message["Message-ID"]
    assert reply["From"] == f"ooto@{DOMAIN}"


async def test_slow_answers_after_the_sender_gave_up(settings: Settings, tmp_path: Path) -> None:
    impatient = settings.model_copy(
        update={
            "simulator_port": 0,
            "simulator_log": tmp_path / "mailbox.jsonl",
            "smtp_timeout_seconds": 0.2,
        }
    )
    slow = MailboxSimulator(impatient)
    await slow.start()
    try:
        message, mail_from = original(f"slow@{DOMAIN}")
        with pytest.raises(aiosmtplib.SMTPTimeoutError):
            await aiosmtplib.send(
                message, sender=mail_from, hostname="127.0.0.1", port=slow.port, timeout=0.2
            )
    finally:
        await slow.stop()
