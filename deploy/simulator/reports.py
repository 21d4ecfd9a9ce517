"""The messages simulator mailboxes send back: RFC 5965 complaints and RFC 3834 auto-replies.

Both go to the envelope sender of the original (Sendarix's VERP bounce address), which is where
a real mailbox provider's feedback loop and auto-responders would send them.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from email import policy
from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.parser import BytesParser
from email.utils import format_datetime

USER_AGENT = "SendarixSimulator/1.0"


_HEADER_END = re.compile(rb"\r?\n\r?\n")


def original_headers(content: bytes) -> Message:
    """The header block of a received message (its body is not needed by any report)."""
    return BytesParser(policy=policy.SMTP).parsebytes(content, headersonly=True)


def raw_headers(content: bytes) -> str:
    """The header block of a received message exactly as it arrived."""
    block = _HEADER_END.split(content, maxsplit=1)[0]
    return block.decode("utf-8", errors="replace").replace("\r\n", "\n").rstrip("\n") + "\n"


def _follow_up_id(original: Message, kind: str, domain: str) -> str:
    """A Message-ID derived from the original's, so one original yields one follow-up id."""
    seed = f"{kind}/{original.get('Message-ID', '')}".encode()
    return f"<{kind}.{hashlib.sha256(seed).hexdigest()[:24]}@{domain}>"


def complaint_report(
    content: bytes, mail_from: str, rcpt: str, domain: str, arrived_at: datetime
) -> Message:
    """An abuse report about ``content``: the recipient ``rcpt`` marked it as spam."""
    original = original_headers(content)
    report = MIMEMultipart("report", report_type="feedback-report", policy=policy.SMTP)
    report["From"] = f"Simulated feedback loop <fbl@{domain}>"
    report["To"] = mail_from
    report["Subject"] = f"Complaint about message {original.get('Message-ID', '')}"
    report["Date"] = format_datetime(arrived_at)
    report["Message-ID"] = _follow_up_id(original, "complaint", domain)
    report.attach(
        MIMEText(
            f"This is an email abuse report for a message received by {rcpt}.\n",
            "plain",
            policy=policy.SMTP,
        )
    )
    feedback = MIMEBase("message", "feedback-report", policy=policy.SMTP)
    feedback.set_payload(
        "Feedback-Type: abuse\n"
        f"User-Agent: {USER_AGENT}\n"
        "Version: 1\n"
        f"Original-Mail-From: <{mail_from}>\n"
        f"Original-Rcpt-To: <{rcpt}>\n"
        f"Arrival-Date: {format_datetime(arrived_at)}\n"
    )
    report.attach(feedback)
    report.attach(MIMEText(raw_headers(content), "rfc822-headers", policy=policy.SMTP))
    return report


def auto_reply(content: bytes, mail_from: str, rcpt: str, domain: str, now: datetime) -> Message:
    """An out-of-office answer from ``rcpt`` to the message in ``content``."""
    original = original_headers(content)
    reply = EmailMessage(policy=policy.SMTP)
    reply["From"] = rcpt
    reply["To"] = mail_from
    reply["Subject"] = f"Automatic reply: {original.get('Subject', '')}"
    reply["Date"] = format_datetime(now)
    reply["Message-ID"] = _follow_up_id(original, "auto-reply", domain)
    reply["Auto-Submitted"] = "auto-replied"
    if (message_id := original.get("Message-ID")) is not None:
        reply["In-Reply-To"] = message_id
        reply["References"] = message_id
    reply.set_content("I am out of the office and will read your message when I am back.\n")
    return reply
