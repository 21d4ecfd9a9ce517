"""A mail client submits over SMTP (STARTTLS, AUTH) and the message reaches the mailbox."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import uuid
from email.message import EmailMessage

import dkim
import httpx
import pytest

from libs.tenants import Tenant
from tests.dns_server import LoopbackDns, txt_lookup
from tests.e2e.conftest import Topology
from tests.support import eventually, jaeger_services

pytestmark = pytest.mark.e2e

PIPELINE = {"ingest", "render", "policy-check", "router", "sender"}


def submit(port: int, api_key: str, mail: EmailMessage) -> tuple[int, str]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the stack's generated, self-signed certificate
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.starttls(context=context)
        smtp.login("apikey", api_key)
        smtp.mail("bounces@example.test")
        smtp.rcpt("new.user@example.com")
        code, reply = smtp.data(mail.as_bytes())
        return code, reply.decode()


async def publish_dkim_key(topology: Topology, api_key: str, zone: LoopbackDns) -> None:
    """Put the DKIM record ``GET /v1/domains/example.test`` asks for on the loopback DNS."""
    answer = await topology.http.get(
        "/v1/domains/example.test", headers={"Authorization": f"Bearer {api_key}"}
    )
    assert answer.status_code == 200, answer.text
    [dkim_record] = [r for r in answer.json()["records"] if r["kind"] == "dkim"]
    zone.add_txt(dkim_record["name"], dkim_record["value"])


async def test_a_message_submitted_over_smtp_is_delivered_signed_and_found(
    topology: Topology, tenant: tuple[Tenant, str], dns_zone: LoopbackDns
) -> None:
    _, api_key = tenant
    await publish_dkim_key(topology, api_key, dns_zone)
    subject = f"Über SMTP {uuid.uuid4().hex}"
    mail = EmailMessage()
    mail["From"] = "Zoë at Acme <hello@example.test>"
    mail["To"] = "New User <new.user@example.com>"
    mail["Subject"] = subject
    mail["X-Sendarix-Category"] = "notification"
    mail.set_content("Welcome aboard")
    mail.add_alternative('<p>Welcome <img src="cid:logo@acme"></p>', subtype="html")
    html = mail.get_body(("html",))
    assert isinstance(html, EmailMessage)
    html.add_related(b"\x89PNG", maintype="image", subtype="png", cid="<logo@acme>")
    mail.add_attachment(b"a,b\n1,2\n", maintype="text", subtype="csv", filename="data.csv")

    port = topology.settings.smtp_submission_port
    code, reply = await asyncio.to_thread(submit, port, api_key, mail)
    assert code == 250, reply
    message_id = reply.removeprefix("2.0.0 OK ")

    shown = await topology.settled(api_key, message_id, "delivered")
    assert (shown["subject"], shown["category"]) == (subject, "notification")
    found = await topology.http.get(
        "/v1/messages",
        params={"recipient": "New.User@example.com"},
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert message_id in [m["id"] for m in found.json()["messages"]]

    delivered = await topology.in_mailpit(subject)
    assert delivered["From"] == {"Name": "Zoë at Acme", "Address": "hello@example.test"}
    assert delivered["To"][0]["Address"] == "new.user@example.com"
    assert delivered["Attachments"] == 1
    assert message_id in delivered["MessageID"]
    async with httpx.AsyncClient(timeout=5) as client:
        answer = await client.get(
            f"{topology.settings.mailpit_ui_url}/api/v1/message/{delivered['ID']}"
        )
    [logo] = answer.json()["Inline"]
    assert (logo["ContentID"], logo["ContentType"]) == ("logo@acme", "image/png")
    async with httpx.AsyncClient(timeout=5) as client:
        raw = await client.get(
            f"{topology.settings.mailpit_ui_url}/api/v1/message/{delivered['ID']}/raw"
        )
    assert dkim.verify(raw.content, dnsfunc=txt_lookup(dns_zone))  # the bytes Mailpit got

    async def whole_trace() -> set[str] | None:  # the submission's span starts the trace
        services = await jaeger_services(topology.settings, shown["trace_id"])
        return services if services and services >= PIPELINE else None

    assert await eventually(whole_trace, timeout=30) >= PIPELINE
