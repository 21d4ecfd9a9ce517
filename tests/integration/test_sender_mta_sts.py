"""MTA-STS in direct delivery against real servers on loopback: the DNS server of
``tests/dns_server.py``, an HTTPS server (uvicorn) serving the policies with a certificate of a
test CA, and aiosmtpd MX hosts with and without STARTTLS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from opentelemetry import trace
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as HttpRoute

from libs.settings import Settings
from schemas.events import MessageState
from services.sender.app import SenderService
from services.sender.classify import classify_reply
from services.sender.destinations import sts_policies
from services.sender.handover import HandoverKind
from services.sender.mta_sts import POLICY_PATH, StsMode
from tests.dns_server import LoopbackDns
from tests.integration.test_sender_delivery import deliver, sender_span
from tests.integration.test_sender_route_connections import (
    Received,
    Recorder,
    mx_route,
    offer,
    server_tls,
    smtp_server,
)
from tests.support import eventually, serving_app, started
from tests.unit.sender.jobs import delivery_job

pytestmark = pytest.mark.integration

DOMAINS = ("enforced", "plain", "elsewhere", "testing", "untrusted", "kept")
"""One recipient domain per case, each under the module's own suffix."""


@dataclass(frozen=True)
class CaFiles:
    """A CA of this module, its certificate file, and a server certificate it signed."""

    ca_file: Path
    server_files: tuple[Path, Path]
    """The certificate (every ``mx.`` and ``mta-sts.`` name of ``DOMAINS``) and its key."""
    stranger_files: tuple[Path, Path]
    """A certificate for the same names that no trusted CA signed."""


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _signed(builder: x509.CertificateBuilder, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    now = datetime.now(UTC)
    return (
        builder.serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def _write(
    folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    cert_file, key_file = folder / f"{stem}.pem", folder / f"{stem}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def _authority(folder: Path, stem: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _signed(
        x509.CertificateBuilder()
        .subject_name(_name(f"Sendarix {stem}"))
        .issuer_name(_name(f"Sendarix {stem}"))
        .public_key(key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
        key,
    )
    _write(folder, stem, cert, key)
    return cert, key


def _leaf(
    folder: Path,
    stem: str,
    names: list[str],
    authority: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
) -> tuple[Path, Path]:
    ca_cert, ca_key = authority
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _signed(
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        ),
        ca_key,
    )
    return _write(folder, stem, cert, key)


@pytest.fixture(scope="module")
def suffix() -> str:
    return f"sts-{datetime.now(UTC).strftime('%H%M%S%f')}.test"


def domain_of(case: str, suffix: str) -> str:
    return f"{case}.{suffix}"


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory, suffix: str) -> CaFiles:
    folder = tmp_path_factory.mktemp("mta-sts-ca")
    names = [
        f"{prefix}.{domain_of(case, suffix)}" for case in DOMAINS for prefix in ("mx", "mta-sts")
    ]
    trusted = _authority(folder, "ca")
    stranger = _authority(folder, "stranger-ca")
    return CaFiles(
        ca_file=folder / "ca.pem",
        server_files=_leaf(folder, "server", names, trusted),
        stranger_files=_leaf(folder, "stranger", names, stranger),
    )


class PolicyServer:
    """What ``https://mta-sts.<domain>`` answers, per host: (status, content type, body)."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, str, str]] = {}
        self.requests: list[str] = []

    async def _policy(self, request: Request) -> Response:
        host = request.headers.get("host", "").partition(":")[0]
        self.requests.append(host)
        status, media_type, body = self.answers.get(host, (404, "text/plain", "no policy"))
        return Response(body, status_code=status, media_type=media_type)

    def app(self) -> Starlette:
        return Starlette(routes=[HttpRoute(POLICY_PATH, self._policy)])


@pytest.fixture(scope="module")
async def policy_server(test_ca: CaFiles) -> AsyncIterator[tuple[PolicyServer, int]]:
    """The policy server over HTTPS on a free loopback port; and that port."""
    served = PolicyServer()
    cert_file, key_file = test_ca.server_files
    async with serving_app(
        served.app(), ssl_certfile=str(cert_file), ssl_keyfile=str(key_file)
    ) as port:
        yield served, port


@pytest.fixture(scope="module")
def sts_settings(
    settings: Settings,
    test_ca: CaFiles,
    dns_zone: LoopbackDns,
    policy_server: tuple[PolicyServer, int],
) -> Settings:
    """Dev mode (loopback hosts allowed), the loopback DNS, the test CA, the policy server."""
    return settings.model_copy(
        update={
            "smtp_tls_ca_file": test_ca.ca_file,
            "dns_nameservers": dns_zone.nameserver,
            "mta_sts_port": policy_server[1],
            "dev_mode": True,
        }
    )


def publish(
    dns_zone: LoopbackDns,
    server: PolicyServer,
    domain: str,
    mode: StsMode,
    mx: str | None = None,
) -> None:
    """``domain``: its MX host ``mx.<domain>`` on loopback, its TXT record and its policy
    naming ``mx`` (by default that host)."""
    dns_zone.add_mx(domain, f"mx.{domain}")
    dns_zone.add_address(f"mx.{domain}", "127.0.0.1")
    dns_zone.add_txt(f"_mta-sts.{domain}", "v=STSv1; id=1")
    dns_zone.add_address(f"mta-sts.{domain}", "127.0.0.1")
    policy = f"version: STSv1\r\nmode: {mode}\r\nmx: {mx or 'mx.' + domain}\r\nmax_age: 86400\r\n"
    server.answers[f"mta-sts.{domain}"] = (200, "text/plain; charset=utf-8", policy)


@pytest.fixture(scope="module")
async def sender(sts_settings: Settings) -> AsyncIterator[SenderService]:
    async with started(SenderService(sts_settings)) as running:
        yield running


async def test_enforce_delivers_over_tls_verified_for_the_mx_name(
    sender: SenderService,
    settings: Settings,
    dns_zone: LoopbackDns,
    policy_server: tuple[PolicyServer, int],
    test_ca: CaFiles,
    suffix: str,
) -> None:
    domain = domain_of("enforced", suffix)
    publish(dns_zone, policy_server[0], domain, StsMode.ENFORCE)
    recorder = Recorder()

    async def arrived() -> list[Received] | None:
        return recorder.received or None

    async with smtp_server(recorder, starttls=server_tls(test_ca.server_files)) as port:
        job = delivery_job(f"user@{domain}", route=mx_route(port), retry_for=timedelta(seconds=30))
        with trace.get_tracer("tests").start_as_current_span("test publish") as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
            await deliver(sender, settings, job)
        await eventually(arrived)
    assert [(entry.rcpt, entry.encrypted) for entry in recorder.received] == [
        ([f"user@{domain}"], True)
    ]
    assert f"mta-sts.{domain}" in policy_server[0].requests
    tags = {tag["key"]: tag["value"] for tag in (await sender_span(settings, trace_id))["tags"]}
    assert tags["smtp.mta_sts"] == "enforce"


@pytest.mark.parametrize(
    ("case", "policy_mx", "starttls"),
    [
        pytest.param("plain", None, False, id="no-starttls"),
        pytest.param("elsewhere", "*.other.test", True, id="mx-not-in-policy"),
        pytest.param("untrusted", None, True, id="certificate-not-trusted"),
    ],
)
async def test_enforce_defers_and_sends_nothing_in_clear(
    case: str,
    policy_mx: str | None,
    starttls: bool,
    sender: SenderService,
    sts_settings: Settings,
    dns_zone: LoopbackDns,
    policy_server: tuple[PolicyServer, int],
    test_ca: CaFiles,
    suffix: str,
) -> None:
    domain = domain_of(case, suffix)
    publish(dns_zone, policy_server[0], domain, StsMode.ENFORCE, policy_mx)
    files = test_ca.stranger_files if case == "untrusted" else test_ca.server_files
    recorder = Recorder()
    async with smtp_server(recorder, starttls=server_tls(files) if starttls else None) as port:
        handover = await offer(sender.connections, sts_settings, mx_route(port), f"user@{domain}")
    assert handover.kind is HandoverKind.REFUSED and handover.reply is not None
    assert classify_reply(handover.reply) is MessageState.DEFERRED
    assert recorder.received == []


async def test_testing_mode_delivers_without_starttls(
    sender: SenderService,
    sts_settings: Settings,
    dns_zone: LoopbackDns,
    policy_server: tuple[PolicyServer, int],
    suffix: str,
) -> None:
    domain = domain_of("testing", suffix)
    publish(dns_zone, policy_server[0], domain, StsMode.TESTING)
    recorder = Recorder()
    async with smtp_server(recorder) as port:
        handover = await offer(sender.connections, sts_settings, mx_route(port), f"user@{domain}")
    assert handover.kind is HandoverKind.ANSWERED
    assert [entry.encrypted for entry in recorder.received] == [False]


async def test_a_policy_is_kept_while_its_host_cannot_be_fetched(
    sts_settings: Settings,
    dns_zone: LoopbackDns,
    policy_server: tuple[PolicyServer, int],
    suffix: str,
) -> None:
    server = policy_server[0]
    domain = domain_of("kept", suffix)
    publish(dns_zone, server, domain, StsMode.ENFORCE)
    policies = sts_policies(sts_settings)
    first = await policies.policy(domain)
    assert first is not None and first.mode is StsMode.ENFORCE

    dns_zone.clear(f"_mta-sts.{domain}")
    dns_zone.add_txt(f"_mta-sts.{domain}", "v=STSv1; id=2")  # a new policy, which fails
    server.answers[f"mta-sts.{domain}"] = (200, "text/html", "<html>hijacked</html>")
    policies._known[domain] = replace(policies._known[domain], checked=float("-inf"))
    assert await policies.policy(domain) == first
    assert server.requests.count(f"mta-sts.{domain}") == 2
