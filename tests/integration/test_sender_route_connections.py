"""The sender's connections as routes ask for them, against real servers: a postfix requiring
STARTTLS and SASL AUTH that relays to Mailpit, aiosmtpd servers (plain, STARTTLS, implicit TLS),
and MX hosts answered by a DNS server on loopback."""

from __future__ import annotations

import asyncio
import socket
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from libs.route_secrets import store_secret
from libs.settings import Settings
from libs.topics import EVENTS, public_topic
from schemas.events import MessageState
from schemas.pipeline import AuthMethod, Route, RouteKind, SourceAddress, TlsMode
from services.ingest.tls import certificate_files
from services.sender.app import SenderService
from services.sender.classify import classify_reply
from services.sender.destinations import resolve
from services.sender.handover import Handover, HandoverKind, RouteConnections, hand_over
from services.sender.tls_auth import RoutePasswords
from tests.dns_server import LoopbackDns
from tests.integration.test_sender_delivery import deliver, event
from tests.postfix_server import running_postfix, unavailable
from tests.support import TopicTap, eventually, started
from tests.unit.sender.jobs import delivery_job

pytestmark = pytest.mark.integration

TENANT = str(uuid.uuid4())
LOGIN = "relayuser"
PASSWORD = "correct horse battery staple"
LANE = delivery_job().message.lane


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (the servers'), and its key."""
    folder = tmp_path_factory.mktemp("tls")
    return certificate_files(Settings(smtp_submission_tls_dir=folder, smtp_helo_name="localhost"))


@pytest.fixture(scope="module")
def smtp_settings(
    settings: Settings, tls_files: tuple[Path, Path], dns_zone: LoopbackDns
) -> Settings:
    """The test settings, trusting the servers' certificate and asking the loopback DNS."""
    return settings.model_copy(
        update={"smtp_tls_ca_file": tls_files[0], "dns_nameservers": dns_zone.nameserver}
    )


@pytest.fixture
async def connections(
    smtp_settings: Settings, pool: asyncpg.Pool
) -> AsyncIterator[RouteConnections]:
    kept = RouteConnections(smtp_settings, RoutePasswords(smtp_settings, lambda: pool))
    yield kept
    await kept.close()


@pytest.fixture(scope="module")
def postfix(settings: Settings, tls_files: tuple[Path, Path]) -> Iterator[int]:
    """A real postfix requiring STARTTLS and AUTH, relaying to the test Mailpit; its port."""
    if why := unavailable():
        pytest.skip(why)
    port = free_port()
    with running_postfix(port, settings.relay_port, *tls_files, {LOGIN: PASSWORD}):
        yield port


async def relay_route(pool: asyncpg.Pool, settings: Settings, port: int, password: str) -> Route:
    """A relay route of this module's tenant to ``port`` (STARTTLS, AUTH PLAIN as ``LOGIN``)
    with ``password`` stored for it."""
    name = f"relay-{uuid.uuid4().hex[:6]}"
    await pool.execute(
        "INSERT INTO routes (tenant_id, name, kind, host, port, tls, auth, username)"
        " VALUES ($1, $2, 'relay', '127.0.0.1', $3, 'starttls', 'plain', $4)",
        TENANT,
        name,
        port,
        LOGIN,
    )
    async with pool.acquire() as connection:
        await store_secret(connection, settings, TENANT, name, password)
    return Route(
        name=name,
        kind=RouteKind.RELAY,
        host="127.0.0.1",
        port=port,
        pool="transactional",
        tls=TlsMode.STARTTLS,
        auth=AuthMethod.PLAIN,
        username=LOGIN,
        credentials=f"{TENANT}/{name}",
        timeout_seconds=5.0,
    )


@pytest.fixture(scope="module", autouse=True)
async def forget_our_routes(pool: asyncpg.Pool) -> AsyncIterator[None]:
    yield
    await pool.execute("DELETE FROM routes WHERE tenant_id = $1", TENANT)


@dataclass
class Received:
    peer: str
    peer_port: int
    ehlo: str
    encrypted: bool
    rcpt: list[str]


class Recorder:
    """An aiosmtpd handler keeping who delivered what, and how."""

    def __init__(self) -> None:
        self.received: list[Received] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert server.transport is not None
        peer: tuple[str, int] = server.transport.get_extra_info("peername")
        self.received.append(
            Received(
                peer=peer[0],
                peer_port=peer[1],
                ehlo=session.host_name or "",
                encrypted=server.transport.get_extra_info("ssl_object") is not None,
                rcpt=list(envelope.rcpt_tos),
            )
        )
        return "250 2.0.0 OK"


@asynccontextmanager
async def smtp_server(
    recorder: Recorder,
    port: int = 0,
    starttls: ssl.SSLContext | None = None,
    implicit: ssl.SSLContext | None = None,
) -> AsyncIterator[int]:
    """An aiosmtpd server on 127.0.0.1 (STARTTLS offered with ``starttls``, TLS from the first
    byte with ``implicit``); its port."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(recorder, loop=loop, tls_context=starttls, hostname="localhost"),
        "127.0.0.1",
        port,
        ssl=implicit,
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def server_tls(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
    return context


def route_to(port: int, **fields: Any) -> Route:
    return Route(**{"name": "test", "host": "127.0.0.1", "port": port, "pool": "p"} | fields)


async def offer(
    connections: RouteConnections,
    settings: Settings,
    route: Route,
    rcpt: str,
    most_messages: int = 100,
) -> Handover:
    """One message handed over on ``route``, claimed whenever asked."""

    async def claim() -> bool:
        return True

    destination = await resolve(route, rcpt.rpartition("@")[2], settings)
    content = f"Message-ID: <{uuid.uuid4()}@example.test>\r\nSubject: hi\r\n\r\nhello\r\n"
    return await hand_over(
        connections,
        destination,
        route,
        LANE,
        "bounces@sendarix.test",
        rcpt,
        content.encode(),
        claim,
        most_messages,
    )


# -- postfix: STARTTLS and AUTH required ---------------------------------------------------


@pytest.fixture(scope="module")
async def sender(smtp_settings: Settings) -> AsyncIterator[SenderService]:
    async with started(SenderService(smtp_settings)) as running:
        yield running


@pytest.fixture
async def tap(settings: Settings, sender: SenderService) -> AsyncIterator[TopicTap]:
    async with TopicTap(settings, public_topic(EVENTS, settings.topic_prefix)) as watching:
        yield watching


async def test_a_relay_route_with_starttls_and_auth_delivers_through_postfix(
    postfix: int, sender: SenderService, settings: Settings, tap: TopicTap, pool: asyncpg.Pool
) -> None:
    route = await relay_route(pool, settings, postfix, PASSWORD)
    route = route.model_copy(update={"return_path_domain": "rp.sendarix.test"})
    job = delivery_job(
        "someone@example.test", route=route, retry_for=timedelta(seconds=30), tenant_id=TENANT
    )
    await deliver(sender, settings, job)
    [delivered] = await tap.wait_for(event(job, "delivered"))
    assert delivered["data"]["smtp"]["code"] == 250

    query = {"query": f"message-id:{job.message.message_id}@example.test"}

    async def relayed() -> dict[str, Any] | None:
        async with httpx.AsyncClient(base_url=settings.mailpit_ui_url) as mailpit:
            found = (await mailpit.get("/api/v1/search", params=query)).json()["messages"]
            if not found:
                return None
            details: dict[str, Any] = (
                await mailpit.get(f"/api/v1/message/{found[0]['ID']}")
            ).json()
            return details

    message = await eventually(relayed, timeout=20.0)
    assert message["ReturnPath"].endswith("@rp.sendarix.test")


async def test_a_wrong_password_is_a_deferral_with_the_servers_reply(
    postfix: int,
    connections: RouteConnections,
    smtp_settings: Settings,
    settings: Settings,
    pool: asyncpg.Pool,
) -> None:
    route = await relay_route(pool, settings, postfix, "not the password")
    handover = await offer(connections, smtp_settings, route, "someone@example.test")
    assert handover.kind is HandoverKind.REFUSED and handover.reply is not None
    assert handover.reply.code == 0 and "535" in handover.reply.text
    assert classify_reply(handover.reply) is MessageState.DEFERRED


# -- TLS modes against aiosmtpd -------------------------------------------------------------


async def test_starttls_required_is_not_sent_to_a_server_without_it(
    connections: RouteConnections, smtp_settings: Settings
) -> None:
    recorder = Recorder()
    async with smtp_server(recorder) as port:
        handover = await offer(
            connections, smtp_settings, route_to(port, tls=TlsMode.STARTTLS), "a@example.test"
        )
    assert handover.kind is HandoverKind.REFUSED and handover.reply is not None
    assert handover.reply.code == 0 and "does not offer STARTTLS" in handover.reply.text
    assert recorder.received == []


@pytest.mark.parametrize(
    ("tls", "trusted", "delivered"),
    [
        pytest.param(TlsMode.OPPORTUNISTIC, False, True, id="opportunistic-unverified"),
        pytest.param(TlsMode.STARTTLS, True, True, id="required-verified"),
        pytest.param(TlsMode.STARTTLS, False, False, id="required-untrusted"),
    ],
)
async def test_starttls_verifies_the_certificate_only_when_required(
    tls: TlsMode,
    trusted: bool,
    delivered: bool,
    tls_files: tuple[Path, Path],
    smtp_settings: Settings,
    pool: asyncpg.Pool,
) -> None:
    settings = smtp_settings.model_copy(
        update={"smtp_tls_ca_file": smtp_settings.smtp_tls_ca_file if trusted else None}
    )
    connections = RouteConnections(settings, RoutePasswords(settings, lambda: pool))
    recorder = Recorder()
    async with smtp_server(recorder, starttls=server_tls(tls_files)) as port:
        handover = await offer(connections, settings, route_to(port, tls=tls), "a@example.test")
        await connections.close()
    assert (handover.kind is HandoverKind.ANSWERED) is delivered, handover
    assert [entry.encrypted for entry in recorder.received] == ([True] if delivered else [])


async def test_implicit_tls_is_tls_from_the_first_byte(
    connections: RouteConnections, smtp_settings: Settings, tls_files: tuple[Path, Path]
) -> None:
    recorder = Recorder()
    async with smtp_server(recorder, implicit=server_tls(tls_files)) as port:
        route = route_to(port, tls=TlsMode.IMPLICIT)
        handover = await offer(connections, smtp_settings, route, "a@example.test")
        await connections.close()
    assert handover.kind is HandoverKind.ANSWERED and handover.reply is not None
    assert handover.reply.code == 250
    assert [entry.encrypted for entry in recorder.received] == [True]


async def test_connections_leave_from_the_pools_address_with_its_ehlo_name(
    connections: RouteConnections, smtp_settings: Settings
) -> None:
    recorder = Recorder()
    source = SourceAddress(address="127.0.0.2", ehlo="otp.pool.example.test")
    async with smtp_server(recorder) as port:
        handover = await offer(
            connections, smtp_settings, route_to(port, source=source), "a@example.test"
        )
        await connections.close()
    assert handover.kind is HandoverKind.ANSWERED
    [received] = recorder.received
    assert (received.peer, received.ehlo) == ("127.0.0.2", "otp.pool.example.test")


async def test_a_connection_carries_at_most_its_sites_messages(
    connections: RouteConnections, smtp_settings: Settings
) -> None:
    recorder = Recorder()
    async with smtp_server(recorder) as port:
        for _ in range(5):
            handover = await offer(
                connections, smtp_settings, route_to(port), "a@example.test", most_messages=2
            )
            assert handover.kind is HandoverKind.ANSWERED
        await connections.close()
    ports = [entry.peer_port for entry in recorder.received]
    assert len(ports) == 5
    assert len(set(ports)) == 3  # two messages, two messages, one


# -- direct delivery: MX hosts from the loopback DNS ---------------------------------------


def mx_route(port: int) -> Route:
    return Route(
        name="direct", kind=RouteKind.MX, host="", port=port, pool="p", tls=TlsMode.OPPORTUNISTIC
    )


async def test_an_mx_route_delivers_to_the_domains_mx_host(
    sender: SenderService, settings: Settings, tap: TopicTap, dns_zone: LoopbackDns
) -> None:
    domain = f"direct-{uuid.uuid4().hex[:8]}.test"
    dns_zone.add_mx(domain, f"mx.{domain}")
    dns_zone.add_address(f"mx.{domain}", "127.0.0.1")
    recorder = Recorder()
    async with smtp_server(recorder) as port:
        job = delivery_job(f"user@{domain}", route=mx_route(port), retry_for=timedelta(seconds=30))
        await deliver(sender, settings, job)
        await tap.wait_for(event(job, "delivered"))
    assert [entry.rcpt for entry in recorder.received] == [[f"user@{domain}"]]


async def test_the_next_mx_takes_over_when_the_first_refuses_connections(
    connections: RouteConnections, smtp_settings: Settings, dns_zone: LoopbackDns
) -> None:
    domain = f"fallback-{uuid.uuid4().hex[:8]}.test"
    dns_zone.add_mx(domain, f"down.{domain}", 10)
    dns_zone.add_address(f"down.{domain}", "127.0.0.3")  # nothing listens there
    dns_zone.add_mx(domain, f"up.{domain}", 20)
    dns_zone.add_address(f"up.{domain}", "127.0.0.1")
    recorder = Recorder()
    async with smtp_server(recorder) as port:
        handover = await offer(connections, smtp_settings, mx_route(port), f"user@{domain}")
        await connections.close()
    assert handover.kind is HandoverKind.ANSWERED
    assert len(recorder.received) == 1


async def test_a_null_mx_bounces_without_a_connection(
    connections: RouteConnections, smtp_settings: Settings, dns_zone: LoopbackDns
) -> None:
    domain = f"nomail-{uuid.uuid4().hex[:8]}.test"
    dns_zone.add_mx(domain, ".", 0)
    handover = await offer(connections, smtp_settings, mx_route(1), f"user@{domain}")
    assert handover.kind is HandoverKind.REFUSED and handover.reply is not None
    assert (handover.reply.code, handover.reply.enhanced_status) == (556, "5.1.10")
    assert classify_reply(handover.reply) is MessageState.BOUNCED
