"""DKIM keys: one RSA 2048 key per sending domain, made when the domain is added.

The selector names the month the key was made, plus a random suffix, so two tenants adding one
domain in the same month never ask for the same DNS name, and a rotated key gets a new name.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

RSA_BITS = 2048


@dataclass(frozen=True)
class DkimKey:
    """A domain's signing key: the selector it is published under and both halves."""

    selector: str
    private_pem: str
    """PKCS#1 PEM (``BEGIN RSA PRIVATE KEY``)."""
    public_key: str
    """Base64 DER SubjectPublicKeyInfo: the ``p=`` of the DKIM record."""


def new_dkim_key(now: datetime) -> DkimKey:
    """A fresh RSA 2048 key under a selector like ``sx202611-3fa9``."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1: what dkimpy reads
        serialization.NoEncryption(),
    )
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    selector = f"sx{now:%Y%m}-{secrets.token_hex(2)}"
    return DkimKey(selector, pem.decode("ascii"), base64.b64encode(der).decode("ascii"))


async def new_dkim_keys(count: int, now: datetime) -> list[DkimKey]:
    """``count`` fresh keys, made off the event loop: an RSA key takes ~50 ms of CPU, which
    would otherwise hold every request and OTP of the process meanwhile."""
    return await asyncio.to_thread(lambda: [new_dkim_key(now) for _ in range(count)])
