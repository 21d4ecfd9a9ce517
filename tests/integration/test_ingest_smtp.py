"""The SMTP submission door on the real broker and database, driven by Python's smtplib.

Every submission goes through STARTTLS and AUTH as a mail client does it; an accepted message is
seen on the render topic and as an ``accepted`` event, a refused one gets the documented reply.
"""

from __future__ import annotations

import asyncio
import base64
import re
import shutil
import smtplib
import socket
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs.database import open_pool
from libs.keys import KeySettings, Scope, insert_key, revoke_key
from libs.sendable import MAX_MESSAGE_BYTES
from libs.settings import Settings
from libs.smtp_sessions import SessionLimits
from libs.tenants import KEY_TTL_SECONDS, Tenant
from libs.topics import EVENTS, lane_topic, public_topic
from schemas.common import Lane, Mailbox, Stream
from schemas.pipeline import MessageSpec
from services.ingest import accept as accept_module
from services.ingest.accept import Ingest
from services.ingest.app import IngestService
from services.ingest.smtp_door import SmtpDoor
from tests.support import TopicTap, eventually, started

pytestmark = pytest.mark.integration

SENDER = "Acme <hello@mail.example.test>"


@pytest.fixture(scope="module")
def door_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings.model_copy(
        update={
            "http_port": 0,
            "smtp_submission_tls_dir": tmp_path_factory.mktemp("tls"),
        }
    )


@pytest.fixture(scope="module")
async def service(door_settings: Settings) -> AsyncIterator[IngestService]:
    async with started(IngestService(door_settings)) as running:
        yield running


def unverified() -> ssl.SSLContext:
    """The client side of STARTTLS to the door's self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def message(
    subject: str = "Your receipt",
    text: str | None = "Thanks for your order.",
    sender: str = SENDER,
    to: str = "jane@example.org",
    **headers: str,
) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = subject
    for name, value in headers.items():
        mail[name.replace("_", "-")] = value
    if text is not None:
        mail.set_content(text)
    return mail


def submit_sync(port: int, api_key: str, data: bytes, recipients: Sequence[str]) -> tuple[int, str]:
    """One message through STARTTLS, AUTH PLAIN, MAIL, RCPT and DATA: the last reply."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.starttls(context=unverified())
        smtp.login("apikey", api_key)
        code, reply = smtp.mail("bounces@other.example")
        assert code == 250, reply
        for recipient in recipients:
            code, reply = smtp.rcpt(recipient)
            if code != 250:
                return code, reply.decode()
        code, reply = smtp.data(data)
        return code, reply.decode()


async def submit(
    service: IngestService | SmtpDoor,
    tenant: tuple[Tenant, str],
    mail: EmailMessage | bytes,
    recipients: Sequence[str] = ("jane@example.org",),
) -> tuple[int, str]:
    data = mail if isinstance(mail, bytes) else mail.as_bytes(policy=SMTP_POLICY)
    port = service.smtp_port if isinstance(service, IngestService) else service.port
    return await asyncio.to_thread(submit_sync, port, tenant[1], data, recipients)


def render_topics(settings: Settings) -> list[str]:
    return [lane_topic("render", lane, settings.topic_prefix) for lane in Lane]


def record_of(message_id: str) -> Callable[[Any], bool]:
    return lambda v: v.get("message", {}).get("message_id") == message_id


def accepted_event(message_id: str) -> Callable[[Any], bool]:
    return lambda v: v.get("subject") == message_id and v.get("type") == "sendarix.message.accepted"


async def accepted_specs(
    settings: Settings, tenant: tuple[Tenant, str], mail: Any, recipients: Sequence[str], svc: Any
) -> tuple[list[MessageSpec], list[Any]]:
    """Submit, expect 250 with one id per recipient; the published messages and events."""
    events_topic = public_topic(EVENTS, settings.topic_prefix)
    async with TopicTap(settings, *render_topics(settings), events_topic) as tap:
        code, reply = await submit(svc, tenant, mail, recipients)
        assert code == 250, reply
        ids = [word for line in reply.splitlines() for word in line.split()[2:]]
        assert len(ids) == len(recipients)
        records = [(await tap.wait_for(record_of(i)))[0] for i in ids]
        events = [(await tap.wait_for(accepted_event(i)))[0] for i in ids]
    return [MessageSpec.model_validate(r["message"]) for r in records], events


async def test_a_text_message_is_accepted_with_its_sendarix_headers(
    service: IngestService, door_settings: Settings, tenant: tuple[Tenant, str]
) -> None:
    mail = message(
        X_Sendarix_Category="billing",
        X_Sendarix_Tags="receipt, eu",
        X_Sendarix_Metadata_Order="A-17",
        X_Campaign="spring",
        Message_ID="<client-own@mail.example.test>",
    )
    [spec], [event] = await accepted_specs(
        door_settings, tenant, mail, ["jane@example.org"], service
    )
    assert spec.tenant_id == tenant[0].id
    assert spec.sender == Mailbox(address="hello@mail.example.test", name="Acme")
    assert spec.recipient == Mailbox(address="jane@example.org")
    assert (spec.subject, spec.html) == ("Your receipt", None)
    assert spec.text == "Thanks for your order.\n"
    assert spec.category == "billing"
    assert spec.lane is Lane.HIGH  # the category's lane, as for an HTTP request
    assert (spec.tags, spec.metadata) == (["receipt", "eu"], {"order": "A-17"})
    assert spec.headers == {"X-Campaign": "spring"}  # Message-ID and the rest are Sendarix's
    assert len(spec.trace_id) == 32 and set(spec.trace_id) != {"0"}
    assert event["data"]["trace_id"] == spec.trace_id


async def test_html_text_and_an_attachment_are_carried(
    service: IngestService, door_settings: Settings, tenant: tuple[Tenant, str]
) -> None:
    mail = message(text="Plain words")
    mail.add_alternative("<p>Rich <b>words</b></p>", subtype="html")
    pdf = b"%PDF-1.4 not really\x00\xff"
    mail.add_attachment(pdf, maintype="application", subtype="pdf", filename="invoice.pdf")
    [spec], _ = await accepted_specs(door_settings, tenant, mail, ["jane@example.org"], service)
    assert spec.text == "Plain words\n"
    assert spec.html == "<p>Rich <b>words</b></p>\n"
    [attachment] = spec.attachments
    assert (attachment.filename, attachment.content_type) == ("invoice.pdf", "application/pdf")
    assert base64.b64decode(attachment.content) == pdf


async def test_long_8bit_lines_are_taken(
    service: IngestService, door_settings: Settings, tenant: tuple[Tenant, str]
) -> None:
    html = "<p>" + "Grüße " * 2000 + "</p>"  # one 14 kB line, as some mailers send HTML
    data = (
        "From: hello@mail.example.test\r\nSubject: long\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        f"{html}\r\n"
    ).encode()
    [spec], _ = await accepted_specs(door_settings, tenant, data, ["jane@example.org"], service)
    assert spec.html == html + "\n"


async def test_a_non_ascii_address_needs_smtputf8_which_is_not_offered(
    service: IngestService, tenant: tuple[Tenant, str]
) -> None:
    [_, (code, reply)] = await asyncio.to_thread(
        dialogue, service.smtp_port, plain(tenant[1]), "MAIL FROM:<josé@example.test>".encode()
    )
    assert (code, reply[:5]) == (553, "5.6.7")


async def test_inline_images_and_quoted_printable_latin1_bodies_are_read(
    service: IngestService, door_settings: Settings, tenant: tuple[Tenant, str]
) -> None:
    mail = message(text=None)
    mail.set_content("Prix: 10 €, café", charset="iso-8859-15", cte="quoted-printable")
    mail.add_alternative('<img src="cid:logo@acme">', subtype="html")
    html = mail.get_body(("html",))
    assert isinstance(html, EmailMessage)
    html.add_related(b"\x89PNG fake", maintype="image", subtype="png", cid="<logo@acme>")
    [spec], _ = await accepted_specs(door_settings, tenant, mail, ["jane@example.org"], service)
    assert spec.text == "Prix: 10 €, café\n"
    assert spec.html == '<img src="cid:logo@acme">\n'
    [image] = spec.attachments
    assert (image.content_type, image.content_id) == ("image/png", "logo@acme")
    assert base64.b64decode(image.content) == b"\x89PNG fake"


async def test_non_ascii_subjects_and_display_names_are_decoded(
    service: IngestService, door_settings: Settings, tenant: tuple[Tenant, str]
) -> None:
    mail = message(
        subject="Grüße aus Köln — ça marche ✓",
        sender="José Müller <jose@mail.example.test>",
        to="Zoë <zoe@example.org>",
        Reply_To="Équipe support <support@example.test>",
    )
    [spec], _ = await accepted_specs(door_settings, tenant, mail, ["zoe@example.org"], service)
    assert spec.subject == "Grüße aus Köln — ça marche ✓"
    assert spec.sender == Mailbox(address="jose@mail.example.test", name="José Müller")
    assert spec.reply_to == Mailbox(address="support@example.test", name="Équipe support")


async def test_every_envelope_recipient_gets_a_message_bcc_included(
    service: IngestService, door_settings: Settings, tenant: tuple[Tenant, str]
) -> None:
    mail = message(to="a@example.org", Cc="b@example.org", Bcc="hidden@example.org")
    recipients = ["a@example.org", "b@example.org", "hidden@example.org"]
    recipients += [f"more{n}@example.org" for n in range(7)]  # ids on two reply lines
    specs, events = await accepted_specs(door_settings, tenant, mail, recipients, service)
    assert [s.recipient.address for s in specs] == recipients
    assert all("Bcc" not in s.headers and "Cc" not in s.headers for s in specs)
    assert len({s.message_id for s in specs}) == 10
    assert [e["data"]["recipient"] for e in events] == recipients


async def test_the_idempotency_header_replays_the_first_answer(
    service: IngestService, tenant: tuple[Tenant, str]
) -> None:
    mail = message(X_Sendarix_Idempotency_Key=f"order-{uuid.uuid4()}")
    first = await submit(service, tenant, mail)
    again = await submit(service, tenant, mail)
    assert first[0] == 250 and first == again


async def test_auth_login_works_too(service: IngestService, tenant: tuple[Tenant, str]) -> None:
    def login() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=10) as smtp:
            smtp.starttls(context=unverified())
            smtp.ehlo()
            assert smtp.has_extn("auth") and "LOGIN" in smtp.esmtp_features["auth"]
            smtp.user, smtp.password = "apikey", tenant[1]
            return smtp.auth("LOGIN", smtp.auth_login)

    code, _ = await asyncio.to_thread(login)
    assert code == 235


def dialogue(port: int, *commands: str | bytes, tls: bool = True) -> list[tuple[int, str]]:
    """EHLO (and STARTTLS), then each raw command (bytes: sent as they are): their replies."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo()
        if tls:
            smtp.starttls(context=unverified())
            smtp.ehlo()
        replies = []
        for command in commands:
            if isinstance(command, bytes):
                smtp.send(command + b"\r\n")
                code, reply = smtp.getreply()
            else:
                code, reply = smtp.docmd(command)
            replies.append((code, reply.decode()))
        return replies


def plain(api_key: str) -> str:
    return "AUTH PLAIN " + base64.b64encode(f"\0apikey\0{api_key}".encode()).decode()


async def test_auth_before_starttls_is_refused_and_not_even_offered(
    service: IngestService, tenant: tuple[Tenant, str]
) -> None:
    def before_tls() -> tuple[bool, list[tuple[int, str]]]:
        with smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=10) as smtp:
            smtp.ehlo()
            offered = smtp.has_extn("auth")
        return offered, dialogue(service.smtp_port, plain(tenant[1]), tls=False)

    offered, [(code, reply)] = await asyncio.to_thread(before_tls)
    assert not offered
    assert (code, reply[:5]) == (530, "5.7.0")


async def test_a_wrong_key_is_refused(service: IngestService) -> None:
    [(code, reply)] = await asyncio.to_thread(dialogue, service.smtp_port, plain("sx_wrong"))
    assert (code, reply[:5]) == (535, "5.7.8")


async def test_a_key_without_the_send_scope_is_refused(
    service: IngestService, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    _, read_only = await insert_key(
        pool, tenant[0].id, KeySettings(name="reader", scopes=frozenset({Scope.READ}))
    )
    [(code, reply)] = await asyncio.to_thread(dialogue, service.smtp_port, plain(read_only))
    assert (code, reply[:5]) == (535, "5.7.8")
    assert "send scope" in reply


async def test_the_sending_key_is_recorded_and_its_restrictions_apply(
    service: IngestService, door_settings: Settings, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    key, secret = await insert_key(
        pool, tenant[0].id, KeySettings(name="billing", streams=(Stream.BROADCAST,))
    )
    refused = await submit(service, (tenant[0], secret), message())
    assert refused[0] == 550 and "key_not_permitted" in refused[1]
    [spec], _ = await accepted_specs(
        door_settings,
        (tenant[0], secret),
        message(X_Sendarix_Stream="broadcast"),
        ["jane@example.org"],
        service,
    )
    assert spec.key_id == key.id


async def test_a_session_whose_key_is_revoked_meanwhile_cannot_send(
    service: IngestService, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    key, secret = await insert_key(pool, tenant[0].id, KeySettings(name="soon revoked"))

    def log_in() -> smtplib.SMTP:  # in a thread: the door answers on this test's loop
        session = smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=30)
        session.starttls(context=unverified())
        session.login("apikey", secret)
        return session

    def send() -> tuple[int, str]:
        smtp.mail("a@example.test")
        smtp.rcpt("jane@example.org")
        code, reply = smtp.data(message().as_bytes())
        return code, reply.decode()

    smtp = await asyncio.to_thread(log_in)
    try:
        assert (await asyncio.to_thread(send))[0] == 250
        assert await revoke_key(pool, tenant[0].id, key.id) is not None
        await asyncio.sleep(KEY_TTL_SECONDS + 0.5)
        code, reply = await asyncio.to_thread(send)
    finally:
        await asyncio.to_thread(smtp.close)
    assert (code, reply[:5]) == (530, "5.7.0")


async def test_mail_before_auth_is_refused(service: IngestService) -> None:
    [(code, reply)] = await asyncio.to_thread(
        dialogue, service.smtp_port, "MAIL FROM:<a@example.test>"
    )
    assert (code, reply[:5]) == (530, "5.7.0")


async def test_too_big_a_message_is_refused(
    service: IngestService, tenant: tuple[Tenant, str]
) -> None:
    def declared_too_big() -> list[tuple[int, str]]:
        return dialogue(
            service.smtp_port,
            plain(tenant[1]),
            f"MAIL FROM:<a@example.test> SIZE={MAX_MESSAGE_BYTES + 1}",
        )

    [(auth_code, _), (code, reply)] = await asyncio.to_thread(declared_too_big)
    assert auth_code == 235
    assert (code, reply[:5]) == (552, "5.3.4")
    huge = message(text="x" * 70 + "\n")
    huge.set_content(("y" * 76 + "\n") * (MAX_MESSAGE_BYTES // 77 + 10))
    code, reply = await submit(service, tenant, huge)
    assert (code, reply[:5]) == (552, "5.3.4")


async def test_too_many_recipients_are_refused_past_the_fiftieth(
    service: IngestService, tenant: tuple[Tenant, str]
) -> None:
    recipients = [f"r{n}@example.org" for n in range(51)]
    code, reply = await submit(service, tenant, message(), recipients)
    assert (code, reply[:5]) == (452, "4.5.3")


async def test_a_from_outside_the_tenants_domains_is_refused(
    service: IngestService, tenant: tuple[Tenant, str]
) -> None:
    code, reply = await submit(service, tenant, message(sender="ceo@other-tenant.example"))
    assert (code, reply[:5]) == (550, "5.7.1")
    assert "sender_not_allowed /from" in reply


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (message(text=None).as_bytes(), "missing_content /html"),
        (message(subject="").as_bytes(), "missing_content /subject"),
        (b"From: nobody\r\nSubject: hi\r\n\r\nbody\r\n", "invalid_address /from"),
        (
            b"From: a@mail.example.test\r\nSubject: x\r\nContent-Type: multipart/mixed;"
            b' boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding:'
            b" base64\r\n\r\n!!!notbase64\r\n",
            "",
        ),
        (b"\xff\xfe\x00garbage without any header\r\n", "invalid_address /from"),
        (
            message(X_Sendarix_Stream="carrier-pigeon").as_bytes(),
            "invalid_request /stream",
        ),
        (message(X_Sendarix_Colour="blue").as_bytes(), "invalid_header /headers/X-Sendarix-Colour"),
    ],
)
async def test_an_invalid_message_is_refused_with_its_reasons(
    service: IngestService, tenant: tuple[Tenant, str], data: bytes, expected: str
) -> None:
    code, reply = await submit(service, tenant, data)
    assert code in (554, 550), reply
    assert expected in reply
    assert "\r" not in reply and "\n" not in reply


@asynccontextmanager
async def door_of(
    service: IngestService,
    pool: asyncpg.Pool,
    settings: Settings,
    sessions: SessionLimits | None = None,
) -> AsyncIterator[SmtpDoor]:
    """A second door beside the service's, on settings (and session limits) of its own."""
    door = SmtpDoor(Ingest.on(settings, service.broker, pool), sessions=sessions)
    await door.start()
    try:
        yield door
    finally:
        await door.stop()


async def test_a_client_holding_too_many_connections_is_turned_away(
    service: IngestService, door_settings: Settings, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    async with door_of(service, pool, door_settings, SessionLimits(per_client=2)) as door:

        def greetings(count: int) -> list[bytes]:
            connections = [socket.create_connection(("127.0.0.1", door.port)) for _ in range(count)]
            try:
                return [c.recv(200) for c in connections]
            finally:
                for connection in connections:
                    connection.close()

        first, second, third = await asyncio.to_thread(greetings, 3)
        assert first.startswith(b"220") and second.startswith(b"220")
        assert third.startswith(b"421 4.7.0")
        await eventually(lambda: _none_held(door))  # the closed sessions are counted out
        code, reply = await submit(door, tenant, message())  # STARTTLS counts once
        assert code == 250, reply
        await eventually(lambda: _none_held(door))


async def _none_held(door: SmtpDoor) -> bool | None:
    return True if door.sessions.held("127.0.0.1") == 0 else None


async def test_a_message_the_broker_cannot_take_is_answered_451(
    service: IngestService,
    door_settings: Settings,
    pool: asyncpg.Pool,
    tenant: tuple[Tenant, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(accept_module, "PUBLISH_TIMEOUT_SECONDS", 1.0)
    nowhere = door_settings.model_copy(update={"topic_prefix": f"absent{uuid.uuid4().hex[:6]}."})
    async with door_of(service, pool, nowhere) as door:
        code, reply = await submit(door, tenant, message())
    assert (code, reply[:5]) == (451, "4.3.0")


async def test_a_login_the_database_cannot_check_is_a_temporary_failure(
    service: IngestService, door_settings: Settings, tenant: tuple[Tenant, str]
) -> None:
    closed = await open_pool(door_settings, size=1)
    await closed.close()
    async with door_of(service, closed, door_settings) as door:
        [(code, reply)] = await asyncio.to_thread(dialogue, door.port, plain(tenant[1]))
    assert (code, reply[:5]) == (454, "4.7.0")


async def test_repeated_wrong_keys_are_answered_ever_more_slowly(
    service: IngestService, door_settings: Settings, pool: asyncpg.Pool
) -> None:
    def guesses(port: int) -> list[float]:
        took = []
        for _ in range(5):
            started_at = time.monotonic()
            [(code, _)] = dialogue(port, plain("sx_guess"))
            assert code == 535
            took.append(time.monotonic() - started_at)
        return took

    async with door_of(service, pool, door_settings) as door:  # failures of its own
        took = await asyncio.to_thread(guesses, door.port)
    assert max(took[:3]) < 1.0
    assert took[3] >= 1.0 and took[4] >= 2.0


async def test_a_connection_may_try_three_logins(
    service: IngestService, door_settings: Settings, pool: asyncpg.Pool
) -> None:
    async with door_of(service, pool, door_settings) as door:
        replies = await asyncio.to_thread(dialogue, door.port, *[plain("sx_guess")] * 4)
    assert [code for code, _ in replies] == [535, 535, 535, 421]
    assert replies[3][1].startswith("4.7.0")


async def test_an_idle_client_is_disconnected(
    service: IngestService, door_settings: Settings, pool: asyncpg.Pool
) -> None:
    def wait_idle(port: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.ehlo()
            time.sleep(1.5)
            with pytest.raises(smtplib.SMTPServerDisconnected):
                smtp.noop()

    idle = door_settings.model_copy(update={"smtp_submission_idle_seconds": 0.5})
    async with door_of(service, pool, idle) as door:
        await asyncio.to_thread(wait_idle, door.port)


async def test_the_generated_certificate_is_kept_and_reused(
    service: IngestService, door_settings: Settings, pool: asyncpg.Pool
) -> None:
    cert = Path(door_settings.smtp_submission_tls_dir) / "smtp-submission.crt"
    first = cert.read_bytes()
    async with door_of(service, pool, door_settings):
        assert cert.read_bytes() == first


@pytest.mark.skipif(shutil.which("swaks") is None, reason="the stack installs swaks with apt")
async def test_swaks_submits_with_starttls_and_auth_plain(
    service: IngestService, tenant: tuple[Tenant, str]
) -> None:
    process = await asyncio.create_subprocess_exec(
        "swaks",
        *("--server", f"127.0.0.1:{service.smtp_port}", "--tls"),
        *("--auth", "PLAIN", "--auth-user", "apikey", "--auth-password", tenant[1]),
        *("--from", "bounces@example.test", "--to", "jane@example.org"),
        *("--header", "From: Acme <hello@mail.example.test>", "--header", "Subject: swaks"),
        *("--body", "Sent with swaks"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    assert "<~  250 2.0.0 OK " in output.decode()


VERBS = [
    b"EHLO ",
    b"MAIL FROM:",
    b"RCPT TO:",
    b"DATA",
    b"AUTH PLAIN ",
    b"AUTH LOGIN ",
    b"RSET",
    b"NOOP ",
    b"STARTTLS",
    b"BDAT ",
]
"""Commands whose arguments the fuzzer garbles, besides raw bytes."""


def _hammer(port: int, lines: list[bytes], after_auth: str | None) -> list[bytes]:
    """Send raw lines (after STARTTLS and AUTH when ``after_auth`` is a key); every reply line
    that came back."""
    if after_auth is None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(b"".join(line + b"\r\n" for line in lines))
            raw.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := raw.recv(65536):
                received += chunk
        return received.splitlines()
    replies = []
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.starttls(context=unverified())
        smtp.login("apikey", after_auth)
        for line in lines:
            smtp.send(line + b"\r\n")
            try:
                code, text = smtp.getreply()
            except smtplib.SMTPServerDisconnected:
                break
            replies.append(b"%d %s" % (code, text))
    return replies


@given(
    lines=st.lists(
        st.one_of(
            st.binary(max_size=600),
            st.builds(
                lambda verb, rest: verb + rest, st.sampled_from(VERBS), st.binary(max_size=300)
            ),
        ),
        max_size=6,
    ),
    authenticated=st.booleans(),
)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
async def test_any_bytes_get_smtp_replies_and_the_door_keeps_serving(
    service: IngestService, tenant: tuple[Tenant, str], lines: list[bytes], authenticated: bool
) -> None:
    lines = [line.replace(b"\r", b"").replace(b"\n", b"") for line in lines]
    key = tenant[1] if authenticated else None
    for answer in await asyncio.to_thread(_hammer, service.smtp_port, lines, key):
        assert re.match(rb"^[2-5]\d\d[ -]", answer), answer
    code, reply = await submit(service, tenant, message())
    assert code == 250, reply
