"""The SMTP door's certificate: configured, or generated once and reused until near expiry."""

from __future__ import annotations

import ssl
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from libs.settings import Settings
from services.ingest import tls


def test_a_configured_certificate_is_used_as_it_is(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    settings = Settings(smtp_submission_cert_file=cert, smtp_submission_key_file=key)
    assert tls.certificate_files(settings) == (cert, key)
    with pytest.raises(ValueError, match="set both"):
        tls.certificate_files(Settings(smtp_submission_cert_file=cert))


def test_a_certificate_is_generated_once_for_loopback_and_reused(tmp_path: Path) -> None:
    settings = Settings(smtp_submission_tls_dir=tmp_path / "tls", smtp_helo_name="door.test")
    cert, key = tls.certificate_files(settings)
    assert key.stat().st_mode & 0o077 == 0
    made = x509.load_pem_x509_certificate(cert.read_bytes())
    names = made.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"door.test", "localhost"}
    assert tls.certificate_files(settings) == (cert, key)
    assert x509.load_pem_x509_certificate(cert.read_bytes()) == made
    context = tls.server_context(settings)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_an_unreadable_or_expiring_certificate_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(smtp_submission_tls_dir=tmp_path)
    cert, _ = tls.certificate_files(settings)
    serials = [x509.load_pem_x509_certificate(cert.read_bytes()).serial_number]
    cert.write_bytes(b"not a certificate")
    tls.certificate_files(settings)
    serials.append(x509.load_pem_x509_certificate(cert.read_bytes()).serial_number)
    monkeypatch.setattr(tls, "RENEW_BEFORE", tls.VALIDITY + timedelta(days=1))
    tls.certificate_files(settings)
    serials.append(x509.load_pem_x509_certificate(cert.read_bytes()).serial_number)
    assert len(set(serials)) == 3
