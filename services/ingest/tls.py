"""The SMTP door's STARTTLS certificate: the configured one, or a self-signed one made once.

Mail clients submitting to a local or test stack need TLS before they may authenticate (the
API key is the password), but nobody should have to make a certificate to try Sendarix: when
none is configured, one is generated into the state folder and reused by every later start.
Clients then connect without verifying it (``swaks --tls`` does by default; Python's smtplib
with an unverified context), which is fine on loopback and never used in production, where the
certificate comes from settings.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from libs.settings import Settings

CERT_NAME = "smtp-submission.crt"
KEY_NAME = "smtp-submission.key"
VALIDITY = timedelta(days=825)
RENEW_BEFORE = timedelta(days=30)
"""A generated certificate this close to expiry is replaced by a fresh one."""


def server_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context STARTTLS upgrades to: TLS 1.2 or newer, with the door's certificate."""
    cert, key = certificate_files(settings)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def certificate_files(settings: Settings) -> tuple[Path, Path]:
    """The certificate and key files: from settings, else the generated pair (made if needed)."""
    cert_file, key_file = settings.smtp_submission_cert_file, settings.smtp_submission_key_file
    if cert_file and key_file:
        return cert_file, key_file
    if cert_file or key_file:
        raise ValueError("set both smtp_submission_cert_file and smtp_submission_key_file")
    folder = settings.smtp_submission_tls_dir
    cert, key = folder / CERT_NAME, folder / KEY_NAME
    if not (cert.exists() and key.exists() and _still_valid(cert)):
        _generate(settings.smtp_helo_name, cert, key)
    return cert, key


def _still_valid(cert: Path) -> bool:
    try:
        loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    except ValueError:
        return False
    return loaded.not_valid_after_utc - datetime.now(UTC) > RENEW_BEFORE


def _generate(hostname: str, cert: Path, key: Path) -> None:
    """A self-signed P-256 certificate for ``hostname``, localhost and 127.0.0.1.

    Both files appear by rename, key first, so a process starting meanwhile never reads half
    of one (one ingest process per stack generates it; a mismatched pair would fail loudly at
    ``load_cert_chain``, and deleting the folder makes a new one).
    """
    cert.parent.mkdir(parents=True, exist_ok=True)
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.now(UTC)
    names: list[x509.GeneralName] = [
        x509.DNSName(hostname),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    key_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_atomically(key, key_pem, mode=0o600)
    _write_atomically(cert, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644)


def _write_atomically(path: Path, content: bytes, mode: int) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as output:
        output.write(content)
    os.replace(partial, path)
