"""DKIM signing (dkimpy) of the bytes the sender hands to SMTP, with the ``from`` domain's key.

The signature covers the headers that say who sent what to whom and how it is encoded, and
the list headers, when present: relaxed/relaxed canonicalization (servers on the way may
refold a header or re-space a line), rsa-sha256. A message whose domain has no key (every
domain gets one when added, so this should not happen) still goes, unsigned, and is counted:
mail is never failed for want of a signature.

dkimpy computes RSA in pure Python (8 ms of CPU a message, measured); its one RSA step is
handed to OpenSSL (``cryptography``) instead, which signs the same bytes (PKCS#1 v1.5 is
deterministic) in a fraction of that, and its parsing of a key's PEM is remembered per key.
Everything else — canonicalization, the header — is dkimpy's.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

import dkim
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from prometheus_client import Counter

from libs.dkim_keys import DkimKey
from libs.sendable import domain_of
from libs.sending_domains import DkimKeyring
from schemas.pipeline import DeliveryJob

log = logging.getLogger(__name__)

SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)
"""The headers signed, each when the message has it."""
CANONICALIZATION = (b"relaxed", b"relaxed")

_HEADER_NAME = re.compile(rb"^([!-9;-~]+):", re.MULTILINE)

UNSIGNED = Counter(
    "sendarix_sender_unsigned_messages",
    "Messages sent without a DKIM signature: their domain had no usable key.",
)


@lru_cache(maxsize=4096)
def _openssl_key(
    modulus: int,
    public_exponent: int,
    private_exponent: int,
    prime1: int,
    prime2: int,
    exponent1: int,
    exponent2: int,
    coefficient: int,
) -> rsa.RSAPrivateKey:
    public = rsa.RSAPublicNumbers(public_exponent, modulus)
    numbers = rsa.RSAPrivateNumbers(
        prime1, prime2, private_exponent, exponent1, exponent2, coefficient, public
    )
    return numbers.private_key(unsafe_skip_rsa_key_validation=True)  # checked when made


def openssl_rsa_sign(digest: Any, private_key: dict[str, int]) -> bytes:
    """``dkim.crypto.RSASSA_PKCS1_v1_5_sign`` (same arguments, same bytes), by OpenSSL."""
    key = _openssl_key(
        *(
            private_key[field]
            for field in (
                "modulus",
                "publicExponent",
                "privateExponent",
                "prime1",
                "prime2",
                "exponent1",
                "exponent2",
                "coefficient",
            )
        )
    )
    algorithm = hashes.SHA256() if digest.name == "sha256" else hashes.SHA1()
    return key.sign(digest.digest(), padding.PKCS1v15(), Prehashed(algorithm))


dkim.RSASSA_PKCS1_v1_5_sign = openssl_rsa_sign
dkim.parse_pem_private_key = lru_cache(maxsize=4096)(dkim.parse_pem_private_key)
"""dkimpy parses a key's PEM (in pure Python) for every signature: a fifth of its cost."""


def sign_message(message: bytes, domain: str, key: DkimKey) -> bytes:
    """``message`` with a ``DKIM-Signature`` header of ``domain`` on top."""
    head = message.split(b"\r\n\r\n", 1)[0]
    present = {name.lower() for name in _HEADER_NAME.findall(head)}
    signature: bytes = dkim.sign(
        message,
        key.selector.encode("ascii"),
        domain.encode("ascii"),
        key.private_pem.encode("ascii"),
        canonicalize=CANONICALIZATION,
        include_headers=[name for name in SIGNED_HEADERS if name in present],
    )
    return signature + message


class MessageSigner:
    """Signs each message with its tenant's key for its ``from`` domain (keys cached)."""

    def __init__(self, keyring: DkimKeyring) -> None:
        self._keyring = keyring

    async def signed(self, job: DeliveryJob, message: bytes) -> bytes:
        """The message as it goes over the wire: signed, or as it is when it cannot be."""
        spec = job.message
        from_domain = domain_of(spec.sender.address)
        found = await self._keyring.key_for(spec.tenant_id, from_domain)
        if found is None:
            UNSIGNED.inc()
            log.warning("no DKIM key for %s: sent unsigned", from_domain, extra=_about(job))
            return message
        try:
            return sign_message(message, *found)
        except dkim.DKIMException as error:
            UNSIGNED.inc()
            log.warning("DKIM signing failed (%r): sent unsigned", error, extra=_about(job))
            return message


def _about(job: DeliveryJob) -> dict[str, str]:
    return {"message_id": job.message.message_id}
