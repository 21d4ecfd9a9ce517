"""What one inbound feedback message says: a bounce, a delay, a complaint, an auto-reply or
nothing we know, and for each recipient it is about, why mail to it failed.

It reads RFC 3464 delivery status notifications, the text bounces of MTAs that send none
(qmail, Exim, old Sendmail, Exchange, Gmail, …), RFC 5965 complaint reports (ARF) and
RFC 3834 auto-replies. Real feedback mail is often broken: ``parse_feedback`` never raises, and
what it cannot read is of kind ``other``.
"""

from __future__ import annotations

import email
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from email.header import decode_header, make_header
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses, parseaddr
from enum import StrEnum

from libs.bounces import NOTHING_AROUND, Context, classify, explains, find_reply_code, find_status
from schemas.events import BounceCategory


class FeedbackKind(StrEnum):
    """What a feedback message is."""

    BOUNCE = "bounce"
    DELAY = "delay"
    COMPLAINT = "complaint"
    AUTO_REPLY = "auto-reply"
    OTHER = "other"


@dataclass(frozen=True)
class RecipientReport:
    """What the message says about one recipient of the original mail."""

    address: str
    action: str | None
    status: str | None
    reply_code: int | None
    diagnostic: str | None
    category: BounceCategory | None
    hard_bounce: bool


@dataclass(frozen=True)
class FeedbackReport:
    """One feedback message, read: its kind, the recipients it is about, the ARF feedback type
    of a complaint, and the headers of the returned original (to match it to its message)."""

    kind: FeedbackKind
    recipients: tuple[RecipientReport, ...]
    feedback_type: str | None
    original_message_id: str | None
    original_headers: Mapping[str, str] = field(default_factory=dict)


UNREADABLE = FeedbackReport(FeedbackKind.OTHER, (), None, None, {})

DSN_TYPES = frozenset(
    {"message/delivery-status", "message/global-delivery-status", "text/delivery-status"}
)
ARF_TYPE = "message/feedback-report"
ORIGINAL_TYPES = frozenset({"message/rfc822", "text/rfc822-headers", "message/global"})

COMPLAINT_SENDERS = ("staff@hotmail.com", "complaints@email-abuse.amazonses.com")
"""Feedback loops that send complaints in a format of their own rather than ARF."""

GROUP_HOSTS = ("googlegroups.com",)
"""Mailing-list hosts whose bounces carry no SMTP reply: the list refused a post (it does not
exist or the sender may not post), which says nothing about the sender's recipients."""

MAILER_LOCAL_PARTS = frozenset(
    {"mailer-daemon", "postmaster", "mail-daemon", "maildaemon", "mailerdaemon", "root"}
)
"""Local parts of the addresses that send bounces, never a failed recipient themselves."""

BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|non.?deliver|delivery (?:status|fail|notification|problem|report)"
    r"|failure notice|returned mail|returned to sender|mail delivery|could not be delivered"
    r"|delivery has failed|not delivered|unable to deliver|delivery error|mail system error"
    r"|warning: could not send|delayed mail|mail failure|permanent error|message delayed"
    r"|bounced? mail",
    re.IGNORECASE,
)
"""Subjects of bounces (a person's reply may say "rejected" or "bounce": not enough)."""
DELAY_WORDS = re.compile(
    r"\bdelayed\b|will (?:continue to )?(?:retry|try again)|not yet been delivered"
    r"|still (?:undelivered|trying)|warning: message|delivery delay",
    re.IGNORECASE,
)
AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(?:auto:|away from|on vacation|vacation|absence|absent|ausente)"
    r"|auto(?:matic)?[ -]?(?:reply|response|antwort|answer)|autoreply|autosvar"
    r"|out of (?:the )?office|abwesen|r[ée]ponse automatique|respuesta autom[aá]tica"
    r"|risposta automatica|automatisch antwoord|afwezig|fuera de la oficina"
    r"|automaattinen vastaus|frånvaro|fravær|不在|自動応答|自动回复",
    re.IGNORECASE,
)
AUTO_REPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponder", "x-mail-autoreply")
"""Headers that autoresponders set instead of, or besides, RFC 3834's Auto-Submitted."""
VACATION_WORDS = (
    "i am away on vacation",
    "i am away until",
    "i am out of the office",
    "i will be traveling for work on",
    "i am currently away",
    "i am currently out of the office",
    "i'm out of the office",
    "i am on vacation",
)
ORIGINAL_MARKER = re.compile(
    r"^[ \t]*[-=_*]*[ \t]*(?:original message|unsent message|returned message"
    r"|message headers? follow|below this line is a copy|this is a copy of the"
    r"|the header of the original|original headers"
    r"|copy of the original|headers of the original|returned mail follows|original text follows"
    r"|content-type: message/rfc822|forwarded message)",
    re.IGNORECASE | re.MULTILINE,
)
ADDRESS = re.compile(
    r"(?<![A-Za-z0-9.!#$%&'*+/=?^_`{|}~-])[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}"
    r"@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,10}"
)
"""An email address in free text; it starts where a local part can start (linear time)."""
FEEDBACK_FIELD = re.compile(r"^Feedback-Type:[ \t]*[a-z-]+[ \t]*$", re.IGNORECASE | re.MULTILINE)
DSN_FIELD = re.compile(r"^(?:Final|Original)-Recipient:", re.IGNORECASE | re.MULTILINE)
ORIGINAL_START = re.compile(r"^[ \t]*(?:Return-Path|Received):[ \t]", re.MULTILINE)
"""The first header of a returned original pasted into the text of a bounce."""
SUMMARY_LINE = re.compile(
    r"^\s*(?:mail from|from|sender|reply-to|return-path|envelope-from|to|cc|bcc|subject|date"
    r"|sent)\s*:",
    re.IGNORECASE,
)
"""A line of a bounce that sums up the original (its sender, its recipients, failed or not)
rather than naming a failed recipient."""
NOT_A_RECIPIENT = re.compile(
    r"message-id|please contact|contact (?:your|the|our)|assistance|if you have (?:any )?questions",
    re.IGNORECASE,
)
"""Words of a line whose addresses are a message id or a help desk, not a failed recipient."""
BOUNCE_BODY = re.compile(
    r"could not be delivered|undeliverable|delivery (?:has )?failed|failed permanently"
    r"|permanent (?:fatal )?errors?|error message below|mail delivery (?:software|subsystem)"
    r"|following (?:address|recipient)|returned mail|delivery status notification"
    r"|unable to deliver|was not delivered|trouble delivering",
    re.IGNORECASE,
)
"""Words near the top of a text bounce from a sender that says nothing else of what it is."""
FIELD_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)\s*:\s*(.*)$")

FALLBACK_CHARSETS = ("utf-8", "euc-jp", "shift_jis", "cp1252")
"""Charsets tried, in order, on a text part its declared charset cannot decode."""

MAX_RECIPIENTS = 100
"""Recipients read from one report: Sendarix sends each message to one recipient, and a hostile
report naming thousands must not stall the listener."""

MAX_TEXT = 200_000
"""Characters of a text part that are read: a bounce says what it has to say well before."""


def parse_feedback(raw: bytes) -> FeedbackReport:
    """Read one inbound feedback message; anything unreadable is a report of kind ``other``."""
    try:
        return _read(email.message_from_bytes(raw, policy=compat32))
    except Exception:  # broken mail is the norm here; a raise would stop the listener
        return UNREADABLE


def report_json(report: FeedbackReport) -> dict[str, object]:
    """The report as the ``sendarix feedback parse`` JSON object."""
    return {
        "kind": report.kind.value,
        "feedback_type": report.feedback_type,
        "original_message_id": report.original_message_id,
        "recipients": [
            {
                "address": r.address,
                "action": r.action,
                "status": r.status,
                "reply_code": r.reply_code,
                "diagnostic": r.diagnostic,
                "category": r.category.value if r.category else None,
                "hard_bounce": r.hard_bounce,
            }
            for r in report.recipients
        ],
    }


@dataclass
class _Parts:
    """A message's parts sorted by what they are, the returned original not opened."""

    texts: list[str] = field(default_factory=list)
    dsn: list[str] = field(default_factory=list)
    arf: list[str] = field(default_factory=list)
    original: Message | None = None


def _read(message: Message, depth: int = 0) -> FeedbackReport:
    parts = _sorted_parts(message)
    original = _original_headers(parts.original)
    message_id = _bare_id(original.get("message-id"))
    if parts.arf or _non_arf_complaint(message, parts):
        return _complaint(message, parts, original, message_id)
    if notification := _ses_notification(parts):
        return notification
    if not parts.dsn:  # delivery-status fields in a text part: a DSN with broken MIME
        parts.dsn = [text for text in parts.texts if DSN_FIELD.search(text)]
    if parts.dsn and (recipients := _dsn_recipients(message, parts)):
        return FeedbackReport(_kind_of(recipients), recipients, None, message_id, original)
    from_a_mailer = _from_a_mailer(message)
    auto_reply = not from_a_mailer and _is_auto_reply(message, parts)
    if from_a_mailer or (not auto_reply and _reads_like_bounce(parts)):
        recipients = _text_recipients(message, parts, original)
        if parts.original is not None and depth < 3 and not any(r.status for r in recipients):
            forwarded = _read(parts.original, depth + 1)  # a bounce that returns a bounce
            if forwarded.kind in (FeedbackKind.BOUNCE, FeedbackKind.DELAY):
                return forwarded
        if recipients:
            return FeedbackReport(_kind_of(recipients), recipients, None, message_id, original)
    automatic = str(message.get("auto-submitted", "")).strip().lower().startswith("auto-")
    if auto_reply or (automatic and not from_a_mailer):  # RFC 3834's auto-generated and -notified
        sender = _addresses(message.get_all("from") or [])[:1]
        recipients = tuple(RecipientReport(a, None, None, None, None, None, False) for a in sender)
        return FeedbackReport(FeedbackKind.AUTO_REPLY, recipients, None, message_id, original)
    return FeedbackReport(FeedbackKind.OTHER, (), None, message_id, original)


def _sorted_parts(message: Message) -> _Parts:
    parts = _Parts()
    for part in _walk(message):
        kind = part.get_content_type()
        if kind in ORIGINAL_TYPES:
            parts.original = parts.original or _original_message(part)
        elif kind in DSN_TYPES:
            parts.dsn.append(_part_text(part))
        elif kind == ARF_TYPE:
            parts.arf.append(_part_text(part))
        elif part.get_content_maintype() in ("text", "multipart") and kind != "text/html":
            parts.texts.append(_part_text(part))
        elif kind == "text/html" and not parts.texts:
            parts.texts.append(_html_text(_part_text(part)))
    return parts


def _walk(message: Message, depth: int = 0) -> Iterator[Message]:
    """Every leaf part, and each returned original as a leaf: bounded in depth for hostile mail.
    A multipart whose boundary could not be read is a leaf too."""
    payload = message.get_payload()
    if depth < 20 and message.get_content_maintype() == "multipart" and isinstance(payload, list):
        for part in payload:
            if isinstance(part, Message):
                yield from _walk(part, depth + 1)
        return
    yield message


def _part_text(part: Message) -> str:
    """A part's text, whatever its encoding, charset or structure."""
    payload = part.get_payload()
    if isinstance(payload, list):  # compat32 parses message/delivery-status into blocks
        return "\n\n".join(
            "\n".join(f"{name}: {value}" for name, value in block.items())
            for block in payload
            if isinstance(block, Message)
        )
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return str(payload)[:MAX_TEXT]
    text = _decoded(data, part.get_content_charset() or "utf-8")
    return text.replace("\r\n", "\n").replace("\r", "\n")[:MAX_TEXT]


def _decoded(data: bytes, charset: str) -> str:
    """``data`` in its declared charset, or in the likeliest other one when that leaves many
    bytes undecodable (a mislabelled part: EUC-JP sent as ISO-2022-JP, Latin-1 as UTF-8)."""
    candidates = (charset, *FALLBACK_CHARSETS)
    best = ""
    for name in candidates:
        try:
            text = data.decode(name, errors="replace")
        except LookupError:
            continue
        if text.count("\ufffd") * 50 <= len(text):
            return text
        if not best or text.count("\ufffd") < best.count("\ufffd"):
            best = text
    return best


def _html_text(html: str) -> str:
    text = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</tr>", "\n", html)
    return re.sub(r"<[^>]{0,2000}>", " ", text)


def _original_message(part: Message) -> Message | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    return email.message_from_string(_part_text(part), policy=compat32)


def _original_headers(original: Message | None) -> dict[str, str]:
    """The returned original's headers, lower-cased names, first of each kept."""
    headers: dict[str, str] = {}
    if original is None:
        return headers
    for name, value in original.items():
        headers.setdefault(name.lower(), " ".join(str(value).split()))
    return headers


def _bare_id(value: str | None) -> str | None:
    if not value:
        return None
    return value.strip().strip("<>").strip() or None


def _subject(message: Message) -> str:
    """The subject, RFC 2047 words decoded (an auto-reply's is often in the reader's language)."""
    raw = str(message.get("subject", ""))
    try:
        return str(make_header(decode_header(raw)))
    except (ValueError, LookupError, UnicodeError):
        return raw


def _addresses(values: list[str]) -> list[str]:
    found = []
    for _, address in getaddresses([str(v) for v in values]):
        if "@" in address and address not in found:
            found.append(address)
    return found


# Complaints --------------------------------------------------------------------------------


def _non_arf_complaint(message: Message, parts: _Parts) -> bool:
    """A complaint without a readable feedback-report part: its report type says so, its text
    carries the report's fields, or it is one of the feedback loops with a format of their own."""
    sender = parseaddr(str(message.get("from", "")))[1].lower()
    subject = _subject(message).lower()
    return (
        str(message.get_param("report-type", "")).lower() == "feedback-report"
        or any(FEEDBACK_FIELD.search(text) for text in parts.texts)
        or str(message.get("x-apple-unsubscribe", "")).strip().lower() == "true"
        or sender in COMPLAINT_SENDERS
        or subject.startswith("complaint about message")
    )


def _complaint(
    message: Message, parts: _Parts, original: dict[str, str], message_id: str | None
) -> FeedbackReport:
    fields = _fields("\n".join(parts.arf or parts.texts))
    feedback_type = next((v.lower() for n, v in fields if n == "feedback-type"), None)
    addresses = _addresses([v for n, v in fields if n in ("original-rcpt-to", "removal-recipient")])
    if str(message.get("x-apple-unsubscribe", "")).strip().lower() == "true":
        feedback_type = feedback_type or "opt-out"
        addresses = addresses or _addresses(message.get_all("from") or [])
    addresses = addresses or _addresses(
        [original.get("x-hmxmroriginalrecipient", ""), original.get("to", "")]
    )
    recipients = tuple(RecipientReport(a, None, None, None, None, None, False) for a in addresses)
    return FeedbackReport(
        FeedbackKind.COMPLAINT, recipients, feedback_type or "abuse", message_id, original
    )


# Amazon SES notifications ---------------------------------------------------------------


def _ses_notification(parts: _Parts) -> FeedbackReport | None:
    """An Amazon SES bounce, complaint or delivery notification (JSON, often inside an SNS
    envelope) mailed to a feedback address."""
    text = "".join(parts.texts).replace("\n", "")
    start = text.find("{")
    if start < 0 or "notificationType" not in text:
        return None
    try:
        found, _ = json.JSONDecoder().raw_decode(text, start)
        if isinstance(found, dict) and isinstance(found.get("Message"), str):
            found = json.loads(found["Message"])
    except ValueError:
        return None
    if not isinstance(found, dict):
        return None
    kind = str(found.get("notificationType", "")).lower()
    mail = found.get("mail") if isinstance(found.get("mail"), dict) else {}
    message_id = _bare_id(str(mail.get("messageId") or "")) if mail else None
    headers = {
        str(h.get("name", "")).lower(): str(h.get("value", ""))
        for h in (mail.get("headers") or [] if mail else [])
        if isinstance(h, dict)
    }
    if kind == "complaint":
        body = found.get("complaint") or {}
        addresses = [str(r.get("emailAddress", "")) for r in body.get("complainedRecipients", [])]
        feedback_type = str(body.get("complaintFeedbackType") or "abuse")
        reports = tuple(
            RecipientReport(a, None, None, None, None, None, False) for a in addresses if a
        )
        return FeedbackReport(FeedbackKind.COMPLAINT, reports, feedback_type, message_id, headers)
    if kind == "bounce":
        body = found.get("bounce") or {}
        transient = str(body.get("bounceType", "")).lower() == "transient"
        reports = tuple(
            _recipient(
                str(r.get("emailAddress", "")),
                str(r.get("action") or ("delayed" if transient else "failed")).lower(),
                r.get("status"),
                _typed_value(str(r.get("diagnosticCode") or "")),
            )
            for r in body.get("bouncedRecipients", [])
            if isinstance(r, dict) and r.get("emailAddress")
        )
        return FeedbackReport(_kind_of(reports), reports, None, message_id, headers)
    if kind == "delivery":
        body = found.get("delivery") or {}
        response = str(body.get("smtpResponse") or "")
        reports = tuple(
            _recipient(str(a), "delivered", None, response) for a in body.get("recipients", [])
        )
        return FeedbackReport(FeedbackKind.OTHER, reports, None, message_id, headers)
    return None


# Delivery status notifications (RFC 3464) --------------------------------------------------


def _fields(text: str) -> list[tuple[str, str]]:
    """``Name: value`` fields (continuation lines unfolded), blank lines as ``("", "")``."""
    fields: list[tuple[str, str]] = []
    for line in text.split("\n"):
        if not line.strip():
            fields.append(("", ""))
        elif line[0] in " \t" and fields and fields[-1][0]:
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}")
        elif match := FIELD_LINE.match(line):
            fields.append((match[1].lower(), match[2].strip()))
    return fields


def _recipient_blocks(text: str) -> list[dict[str, str]]:
    """The per-recipient field blocks of a delivery-status part."""
    blocks: list[dict[str, str]] = []
    block: dict[str, str] = {}
    for name, value in _fields(text):
        starts = name in ("original-recipient", "final-recipient") and name in block
        if not name or starts:
            if block:
                blocks.append(block)
            block = {}
        if name:
            block.setdefault(name, value)
    if block:
        blocks.append(block)
    return [b for b in blocks if "final-recipient" in b or "original-recipient" in b]


def _typed_value(value: str) -> str:
    """A DSN value without its type: ``rfc822; bob@x`` is ``bob@x``, ``smtp; 550 …`` ``550 …``."""
    typed, sep, rest = value.partition(";")
    return rest.strip() if sep and " " not in typed.strip() else value.strip()


def _dsn_recipients(message: Message, parts: _Parts) -> tuple[RecipientReport, ...]:
    readable = "\n".join(parts.texts)
    failed = _addresses(message.get_all("x-failed-recipients") or [])
    reports = []
    blocks = [b for text in parts.dsn for b in _recipient_blocks(text)][:MAX_RECIPIENTS]
    for index, block in enumerate(blocks):
        named = [block.get("final-recipient", ""), block.get("original-recipient", "")]
        address = next(filter(None, (_address_in(_typed_value(n)) for n in named)), None)
        if address is None and index < len(failed):  # Exim names a mailbox file, not an address
            address = failed[index]
        if address is None:
            continue
        diagnostic = _typed_value(block.get("diagnostic-code", "")) or _nearby(readable, address)
        action = block.get("action", "").split()[0].lower() if block.get("action") else None
        context = Context(_paragraph(readable, address))
        found = _recipient(address, action, block.get("status"), diagnostic, context)
        reports.append(found)
    return tuple(reports)


def _address_in(text: str) -> str | None:
    match = ADDRESS.search(text)
    return match[0].strip(".") if match else None


def _preferred_status(field_status: str | None, diagnostic: str) -> str | None:
    """The Status field or the code in the diagnostic, whichever says more (Sisimai's rules):
    the one of the reply code's class, else the more specific one."""
    field_code = find_status(field_status or "")
    in_text = find_status(diagnostic, classes="45") or find_status(diagnostic)
    if field_code is None or in_text is None or field_code == in_text:
        return field_code or in_text
    reply = str(find_reply_code(diagnostic) or "")
    if reply and field_code[0] != in_text[0]:
        return in_text if reply[0] == in_text[0] else field_code
    vaguer = (
        field_code.endswith(".0.0")
        or (".0" in field_code and ".0" not in in_text)
        or field_code in ("4.4.7", "5.1.1")
        or field_code.startswith("5.3.")
        or (field_code == "5.1.3" and in_text.startswith("5.7."))
    )
    return in_text if vaguer and not in_text.endswith(".0.0") else field_code


def _recipient(
    address: str,
    action: str | None,
    field_status: str | None,
    diagnostic: str,
    context: Context = NOTHING_AROUND,
) -> RecipientReport:
    """One recipient's report; ``context`` is what is known around it (``classify``)."""
    diagnostic = " ".join(diagnostic.split())[:2000]
    status = _preferred_status(field_status, diagnostic)
    code = find_reply_code(diagnostic, status)
    if action in ("delivered", "relayed", "expanded"):
        return RecipientReport(address, action, status, code, diagnostic or None, None, False)
    found = classify(code, status, diagnostic, context)
    hard = found.hard and action != "delayed"
    return RecipientReport(address, action, status, code, diagnostic or None, found.category, hard)


def _kind_of(recipients: tuple[RecipientReport, ...]) -> FeedbackKind:
    actions = {r.action for r in recipients}
    if actions & {"failed", None} or actions - {"delayed", "delivered", "relayed", "expanded"}:
        return FeedbackKind.BOUNCE
    if "delayed" in actions:
        return FeedbackKind.DELAY
    return FeedbackKind.OTHER


# Text bounces ------------------------------------------------------------------------------


def _from_a_mailer(message: Message) -> bool:
    """True when the headers say a mail system sent it as a bounce."""
    sender = str(message.get("from", ""))
    return (
        parseaddr(sender)[1].lower().partition("@")[0] in MAILER_LOCAL_PARTS
        or "mailer-daemon" in sender.lower()
        or bool(message.get("x-failed-recipients"))
        or bool(BOUNCE_SUBJECT.search(_subject(message)))
    )


def _reads_like_bounce(parts: _Parts) -> bool:
    """True when a message the headers say nothing of returns an original or starts like a
    bounce."""
    return parts.original is not None or bool(BOUNCE_BODY.search("\n".join(parts.texts)[:3000]))


def _readable(parts: _Parts) -> str:
    """The human-readable report: the text parts up to where the returned original begins."""
    text = "\n".join(parts.texts)
    ends = [m.start() for m in (ORIGINAL_MARKER.search(text), ORIGINAL_START.search(text)) if m]
    return text[: min(ends)] if ends else text


def _own_addresses(message: Message, original: Mapping[str, str]) -> set[str]:
    """Addresses in a bounce that are not failed recipients: its own and the original sender."""
    values = [
        str(v)
        for name in ("from", "to", "cc", "reply-to", "sender", "return-path")
        for v in message.get_all(name) or []
    ]
    values += [original.get(name, "") for name in ("from", "sender", "return-path", "reply-to")]
    return {a.lower() for a in _addresses(values)}


def _text_recipients(
    message: Message, parts: _Parts, original: Mapping[str, str]
) -> tuple[RecipientReport, ...]:
    readable = _readable(parts)
    failed = _addresses(message.get_all("x-failed-recipients") or [])[:MAX_RECIPIENTS]
    if not failed:
        own = _own_addresses(message, original)
        for line in readable.split("\n"):
            if SUMMARY_LINE.match(line) or NOT_A_RECIPIENT.search(line):
                continue
            for match in ADDRESS.finditer(line):
                address = match[0].strip(".")
                lowered = address.lower()
                if lowered in own or lowered.partition("@")[0] in MAILER_LOCAL_PARTS:
                    continue
                if lowered not in (a.lower() for a in failed) and len(failed) < MAX_RECIPIENTS:
                    failed.append(address)
    if not failed:
        failed = _addresses([original.get("to", "")])[:1]
    in_text = find_status(readable)
    delayed = bool(DELAY_WORDS.search(_subject(message))) and (
        in_text is None or in_text.startswith("4")
    )
    reports = []
    for address in failed:
        diagnostic = _nearby(readable, address, failed) or readable
        action = "delayed" if delayed else "failed"
        report = _recipient(
            address, action, None, diagnostic, Context(readable, command_required=True)
        )
        if report.status is None and address.lower().endswith(GROUP_HOSTS):
            report = replace(report, category=BounceCategory.POLICY, hard_bounce=False)
        reports.append(report)
    return tuple(reports)


def _paragraph(text: str, address: str) -> str:
    """The lines of ``text`` from where ``address`` first appears to the next blank line."""
    at = text.lower().find(address.lower())
    if at < 0:
        return ""
    end = text.find("\n\n", at)
    return text[text.rfind("\n", 0, at) + 1 : end if end >= 0 else len(text)]


def _nearby(text: str, address: str, others: list[str] | None = None) -> str:
    """What ``text`` says next to ``address``: its own line and continuation lines when they
    say something, else everything up to the next recipient; empty when it is not there."""
    lines = text.split("\n")
    lowered = address.lower()
    others_lowered = [o.lower() for o in others or [] if o.lower() != lowered]
    start = next((i for i, line in enumerate(lines) if lowered in line.lower()), None)
    if start is None:
        return ""

    def another(line: str) -> bool:
        low = line.lower()
        return any(o in low for o in others_lowered)

    end = start + 1
    while (
        end < len(lines)
        and lines[end].strip()
        and lines[end][:1] in " \t"
        and not another(lines[end])
    ):
        end += 1
    snippet = "\n".join(lines[start:end])
    if explains(snippet.replace(address, "")):
        return snippet
    end = start + 1
    while end < len(lines) and not another(lines[end]):
        end += 1
    snippet = "\n".join(lines[start:end])
    return snippet if explains(snippet.replace(address, "")) else ""


# Auto-replies (RFC 3834) -------------------------------------------------------------------


def _is_auto_reply(message: Message, parts: _Parts) -> bool:
    auto_submitted = str(message.get("auto-submitted", "")).strip().lower()
    precedence = str(message.get("precedence", "")).strip().lower()
    body = " ".join("\n".join(parts.texts)[:5000].lower().split())
    return (
        auto_submitted.startswith("auto-replied")
        or any(message.get(name) for name in AUTO_REPLY_HEADERS)
        or precedence == "auto_reply"
        or str(message.get("x-apple-action", "")).strip().lower() == "vacation"
        or bool(AUTO_REPLY_SUBJECT.search(_subject(message)))
        or any(words in body for words in VACATION_WORDS)
    )
