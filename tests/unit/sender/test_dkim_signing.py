"""DKIM signatures on the bytes ``build_message`` writes: what they cover, and that they verify."""

from __future__ import annotations

import email
import hashlib
from datetime import UTC, datetime
from typing import Any

import dkim
import dkim.crypto
import pytest

from libs.dkim_keys import DkimKey, new_dkim_key
from libs.domain_records import dkim_tags
from schemas.common import Mailbox
from services.sender.dkim_signing import openssl_rsa_sign, sign_message
from services.sender.mime import build_message
from tests.unit.sender.jobs import delivery_job

DOMAIN = "example.test"


@pytest.fixture(scope="module")
def key() -> DkimKey:
    return new_dkim_key(datetime.now(UTC))


def key_record(key: DkimKey) -> dict[bytes, bytes]:
    """The DKIM TXT record, by name, as the domain publishes it."""
    name = f"{key.selector}._domainkey.{DOMAIN}.".encode()
    return {name: f"v=DKIM1; k=rsa; p={key.public_key}".encode()}


def verifies(message: bytes, key: DkimKey) -> bool:
    published = key_record(key)
    return bool(dkim.verify(message, dnsfunc=lambda name, timeout=5: published.get(name, b"")))


def signature_tags(message: bytes) -> dict[str, str]:
    return dkim_tags(str(email.message_from_bytes(message)["DKIM-Signature"]))


def signed_headers(message: bytes) -> list[str]:
    return signature_tags(message)["h"].split(":")


def built(**fields: Any) -> bytes:
    message = build_message(delivery_job(**fields))
    assert isinstance(message, bytes)
    return message


def test_a_signed_message_verifies_with_the_published_key(key: DkimKey) -> None:
    signed = sign_message(built(), DOMAIN, key)
    assert signed.startswith(b"DKIM-Signature: ")
    assert verifies(signed, key)
    tags = signature_tags(signed)
    assert (tags["a"], tags["c"], tags["d"], tags["s"]) == (
        "rsa-sha256",
        "relaxed/relaxed",
        DOMAIN,
        key.selector,
    )


def test_the_signature_covers_the_identity_and_mime_headers(key: DkimKey) -> None:
    names = signed_headers(sign_message(built(), DOMAIN, key))
    assert names == [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
    ]


def test_reply_to_and_list_headers_are_signed_when_present(key: DkimKey) -> None:
    message = built(
        reply_to=Mailbox(address="help@example.test"),
        headers={
            "List-Unsubscribe": "<https://example.test/u/1>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    names = signed_headers(sign_message(message, DOMAIN, key))
    assert {"reply-to", "list-unsubscribe", "list-unsubscribe-post"} <= set(names)


def test_a_changed_subject_or_body_breaks_the_signature(key: DkimKey) -> None:
    signed = sign_message(built(), DOMAIN, key)
    assert not verifies(signed.replace(b"Subject: Your code", b"Subject: Your c0de"), key)
    assert not verifies(signed.replace(b"123456", b"654321"), key)


def test_another_key_does_not_verify(key: DkimKey) -> None:
    other = new_dkim_key(datetime.now(UTC))
    signed = sign_message(built(), DOMAIN, other)
    impostor = DkimKey(other.selector, other.private_pem, key.public_key)
    assert not verifies(signed, impostor)


@pytest.mark.parametrize("algorithm", ["sha256", "sha1"])
def test_openssl_signs_the_very_bytes_dkimpy_would(key: DkimKey, algorithm: str) -> None:
    private = dkim.crypto.parse_pem_private_key(key.private_pem.encode())
    ours = openssl_rsa_sign(hashlib.new(algorithm, b"the signed headers"), private)
    theirs = dkim.crypto.RSASSA_PKCS1_v1_5_sign(
        hashlib.new(algorithm, b"the signed headers"), private
    )
    assert ours == theirs
