"""The one definition of a sendable message: text rules, header rules, mailboxes — and that
whatever passes the edge and render is written by the sender, never refused by it."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.sendable import (
    BODY,
    HEADER_VALUE,
    ONE_LINE,
    UnsendableAddress,
    header_fault,
    max_header_value_chars,
    parse_mailbox,
)
from libs.template_engine import render_inline
from schemas.common import Lane, Mailbox
from schemas.pipeline import DeliveryJob, MessageSpec, RenderedContent, Route
from schemas.send import SendRequest
from services.ingest.validate import Addresses, check_request, parse_request
from services.sender.mime import build_message

NEVER_ON_ONE_LINE = ["\x00", "\x01", "\n", "\r", "\x1b", "\x7f", "\x80", "\x85", "\x9f"]
NEVER_ON_ONE_LINE += ["\u2028", "\u2029", "\ud800", "\udfff"]


@pytest.mark.parametrize("character", NEVER_ON_ONE_LINE)
def test_controls_breaks_and_lone_surrogates_never_reach_a_header(character: str) -> None:
    value = f"a{character}b"
    assert ONE_LINE.fault(value) == ONE_LINE.fault(character)
    assert HEADER_VALUE.fault(value) is not None
    assert ONE_LINE.remove(value) == "ab"


def test_only_header_values_may_hold_a_tab() -> None:
    assert HEADER_VALUE.fault("a\tb") is None
    assert ONE_LINE.fault("a\tb") == "U+0009 may not appear in a name, address, filename or label"


@pytest.mark.parametrize(
    "text", ["Zoë Ünïcødé 名前 👋", "\uff21\uff22\uff23", "\u00a0non-breaking", "a=?b"]
)
def test_printable_unicode_is_one_line_text(text: str) -> None:
    assert ONE_LINE.fault(text) is None and HEADER_VALUE.fault(text) is None


def test_bodies_refuse_only_nul_and_lone_surrogates() -> None:
    assert BODY.fault("line\r\nnext\tcol\x0c\x85\u2028 ✓") is None
    assert BODY.fault("a\x00b") == "U+0000 may not appear in a body or template data"
    assert BODY.fault("a\ud83db") == "U+D83D may not appear in a body or template data"
    assert BODY.remove("a\x00b\udc00c") == "abc"


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("X-Campaign", "spring ✓", None),
        ("X-Tabbed", "a\tb", None),
        ("x" * 76, "v", None),
        ("x" * 77, "v", "invalid_header"),
        ("Bad Name", "v", "invalid_header"),
        ("X:Colon", "v", "invalid_header"),
        ("Ümlaut", "v", "invalid_header"),
        ("", "v", "invalid_header"),
        ("Message-ID", "<forged@x>", "forbidden_header"),
        ("bcc", "spy@example.org", "forbidden_header"),
        ("X-Injected", "a\r\nBcc: spy@example.org", "invalid_header"),
        ("X-Nel", "a\x85b", "invalid_header"),
        ("X-Separator", "a\u2028b", "invalid_header"),
        ("X-Long", "v" * max_header_value_chars("X-Long"), None),
        ("X-Long", "v" * (max_header_value_chars("X-Long") + 1), "invalid_header"),
    ],
)
def test_header_rules(name: str, value: str, code: str | None) -> None:
    fault = header_fault(name, value)
    assert (fault.code if fault else None) == code


@pytest.mark.parametrize(
    ("value", "mailbox"),
    [
        ("user@example.org", Mailbox(address="user@example.org")),
        ("<user@example.org>", Mailbox(address="user@example.org")),
        ("User Name <user@example.org>", Mailbox(address="user@example.org", name="User Name")),
        ('"Doe, Jane" <jane@example.org>', Mailbox(address="jane@example.org", name="Doe, Jane")),
        ('"Say \\"hi\\"" <a@example.org>', Mailbox(address="a@example.org", name='Say "hi"')),
        (
            "Ana María <ana.maria@example.com>",
            Mailbox(address="ana.maria@example.com", name="Ana María"),
        ),
        ("Zoë 名前 <Zoe@EXAMPLE.org>", Mailbox(address="Zoe@example.org", name="Zoë 名前")),
        (
            "J. O'Brien (Sales) <jo@example.org>",
            Mailbox(address="jo@example.org", name="J. O'Brien (Sales)"),
        ),
        ("user@bücher.de", Mailbox(address="user@xn--bcher-kva.de")),
        ("  x@simulator.sendarix.test ", Mailbox(address="x@simulator.sendarix.test")),
    ],
)
def test_mailboxes_that_are_sendable(value: str, mailbox: Mailbox) -> None:
    assert parse_mailbox(value) == mailbox


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("not-an-address", "invalid_address"),
        ("foo bar@example.org", "invalid_address"),
        ("Bob <>", "invalid_address"),
        ("a@example.org, b@example.org", "invalid_address"),
        ("Doe, Jane <jane@example.org>", "invalid_address"),
        ('a"b <x@example.org>', "invalid_address"),
        ('"a"b" <x@example.org>', "invalid_address"),
        ("Bob <bob@example.org> trailing@example.org", "invalid_address"),
        ("bob@example.org (comment)", "invalid_address"),
        ("bob@example.org\r\nBcc: victim@example.org", "invalid_address"),
        ("Rev\u2028Team <login@example.test>", "invalid_address"),
        ("Rev\x85Team <login@example.test>", "invalid_address"),
        ("bob@localhost", "invalid_address"),
        (f"{'x' * 65}@example.org", "invalid_address"),
        ("josé@example.com", "smtputf8_unsupported"),
        ("José <josé@example.com>", "smtputf8_unsupported"),
    ],
)
def test_mailboxes_that_are_refused(value: str, code: str) -> None:
    with pytest.raises(UnsendableAddress) as refused:
        parse_mailbox(value)
    assert refused.value.code == code


def test_smtputf8_refusal_says_so() -> None:
    with pytest.raises(ValueError, match="SMTPUTF8 is not supported yet"):
        parse_mailbox("josé@example.com")


@pytest.mark.parametrize(
    "name",
    [
        "=?utf-8?q?ceo=40bank.example?=",
        '"=?utf-8?q?ceo=40bank.example?="',
        "ceo@bank.example",
        '"ceo@bank.example"',
        '"CEO <ceo@bank.example>"',
        '"a > b"',
        "ceo\uff20bank.example",  # fullwidth @: NFKC makes it an @
        "ceo﹫bank.example",  # small commercial at
    ],
)
def test_display_names_that_could_show_another_sender_are_refused(name: str) -> None:
    with pytest.raises(UnsendableAddress, match="display name"):
        parse_mailbox(f"{name} <login@example.test>")


PRINTABLE = st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp"))
"""Mostly what the edge lets through, so that most examples get as far as the sender."""
TRICKY = ["\t", "=?", "<", "@", '"', "\\", ",", ";", ".", "é", "名", "😀", " ", "  "]
WRITTEN = st.lists(
    st.sampled_from(TRICKY) | st.text(PRINTABLE, min_size=1, max_size=8), min_size=1, max_size=6
).map("".join)
NOW = datetime(2030, 1, 1, tzinfo=UTC)


@settings(max_examples=300, deadline=None)
@given(
    sender_name=WRITTEN,
    recipient_name=WRITTEN,
    subject=WRITTEN,
    text=WRITTEN,
    html=WRITTEN,
    header=WRITTEN,
    filename=WRITTEN,
)
def test_what_passes_the_edge_and_render_is_sent(
    sender_name: str,
    recipient_name: str,
    subject: str,
    text: str,
    html: str,
    header: str,
    filename: str,
) -> None:
    body = {
        "from": '"{}" <login@example.test>'.format(
            sender_name.replace("\\", "\\\\").replace('"', '\\"')
        ),
        "to": [f"{recipient_name} <user@bücher.de>"],
        "subject": subject,
        "text": text,
        "html": html,
        "headers": {"X-Custom": header},
        "attachments": [{"filename": filename, "content": base64.b64encode(b"%PDF").decode()}],
    }
    request = parse_request(json.dumps(body).encode(), SendRequest)
    if isinstance(request, list):
        return
    addresses = check_request(request, ("example.test",), None, NOW)
    rendered = render_inline(request.subject, request.html, request.text)
    if not isinstance(addresses, Addresses) or not isinstance(rendered, RenderedContent):
        return
    spec = MessageSpec(
        message_id="5f0c3c1e-8a4b-4c1d-9e2f-0a1b2c3d4e5f",
        tenant_id="t",
        trace_id="0" * 32,
        accepted_at=NOW,
        sender=addresses.sender,
        recipient=addresses.recipients[0],
        lane=Lane.CRITICAL,
        headers=request.headers,
        attachments=request.attachments,
    )
    route = Route(name="r", host="127.0.0.1", port=25, pool="default")
    job = DeliveryJob(
        message=spec, content=rendered, route=route, attempt=1, retry_until=NOW + timedelta(1)
    )
    built = build_message(job)
    assert isinstance(built, bytes), built
    message = message_from_bytes(built, policy=policy.default)
    assert message["From"].addresses[0].addr_spec == "login@example.test"
    assert message["To"].addresses[0].addr_spec == "user@xn--bcher-kva.de"
    assert message["Subject"] == rendered.subject
