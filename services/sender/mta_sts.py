"""MTA-STS (RFC 8461): whether a recipient domain asks for verified TLS to its MX hosts.

A domain publishes a TXT record ``_mta-sts.<domain>`` (``v=STSv1; id=...``) and a policy at
``https://mta-sts.<domain>/.well-known/mta-sts.txt`` naming its MX hosts and a mode. In
``enforce`` mode mail goes only to the hosts the policy names, over STARTTLS with a certificate
verified for the host's name, and is deferred otherwise (never sent in clear); ``testing`` only
logs what would have failed. An invalid policy is no policy (section 3.2).

Policies are kept per process for their ``max_age``; the TXT record is asked again at most once
per ``RECHECK_SECONDS`` per domain, and a new id fetches the policy again. A failed lookup or
fetch keeps an unexpired policy (section 5.1): an attacker blocking them gains nothing.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from dataclasses import dataclass, replace
from enum import StrEnum

import dns.asyncresolver
import dns.exception
import dns.resolver
import httpx

from libs.domain_verification import resolver_of
from libs.settings import Settings
from libs.webhook_targets import TargetGuard, TargetRefused
from schemas.pipeline import SmtpReply

log = logging.getLogger(__name__)

MAX_AGE_SECONDS = 31_557_600
"""The longest ``max_age`` RFC 8461 allows (a year); a longer one is clamped to it."""
RECHECK_SECONDS = 300.0
"""How often the TXT record of a domain is asked again: a changed policy is picked up within
minutes, while a busy domain costs one DNS lookup per five minutes rather than one per message."""
MAX_POLICY_BYTES = 64 * 1024
"""Policies are a few lines (RFC 8461 section 3.3 suggests this limit)."""
FETCH_TIMEOUT_SECONDS = 5.0
"""The first message to a domain waits for its policy (the MX lookup's own bound, by default):
a policy host that does not answer must not hold its batch for long."""
POLICY_PATH = "/.well-known/mta-sts.txt"
_TXT_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_MX_PATTERN = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+")


class StsMode(StrEnum):
    """What a policy asks of senders."""

    ENFORCE = "enforce"
    TESTING = "testing"
    NONE = "none"


@dataclass(frozen=True)
class StsPolicy:
    """A domain's parsed policy."""

    mode: StsMode
    mx: tuple[str, ...]
    max_age: int

    def matches(self, mx_host: str) -> bool:
        """Whether ``mx_host`` is one of the policy's; ``*.example.com`` stands for exactly one
        left-most label (``mx1.example.com``, not ``a.b.example.com`` nor ``example.com``)."""
        host = mx_host.lower().rstrip(".")
        for pattern in self.mx:
            if pattern.startswith("*."):
                label, _, rest = host.partition(".")
                if label and rest == pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return False


def parse_txt(records: list[str]) -> str | None:
    """The policy id of the ``_mta-sts`` TXT records, or None: no record starts with
    ``v=STSv1``, more than one does (section 3.1: then there is no policy), or it is invalid."""
    found = [record for record in records if record.startswith("v=STSv1")]
    if len(found) != 1:
        return None
    fields: dict[str, str] = {}
    for field_text in found[0].split(";"):
        key, equals, value = field_text.strip().partition("=")
        if not key and not equals:  # a trailing ";"
            continue
        fields.setdefault(key, value)
    if fields.get("v") != "STSv1" or not _TXT_ID.fullmatch(fields.get("id", "")):
        return None
    return fields["id"]


def parse_policy(text: str) -> StsPolicy | None:
    """The policy ``text`` holds (lines ``key: value``, LF or CRLF), or None when it is invalid:
    a wrong version, an unknown mode, no valid ``max_age``, no ``mx`` outside ``none`` mode.
    Unknown keys are ignored; only the first of a repeated key but ``mx`` counts."""
    fields: dict[str, str] = {}
    mx: list[str] = []
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if not colon:
            continue
        key, value = key.strip(), value.strip()
        if key == "mx":
            mx.append(value.lower().rstrip("."))
        else:
            fields.setdefault(key, value)
    if fields.get("version") != "STSv1":
        return None
    try:
        mode = StsMode(fields.get("mode", ""))
    except ValueError:
        return None
    max_age = fields.get("max_age", "")
    if not (max_age.isascii() and max_age.isdigit() and len(max_age) <= 10):
        return None
    if any(not _MX_PATTERN.fullmatch(pattern) for pattern in mx):
        return None
    if not mx and mode is not StsMode.NONE:
        return None
    return StsPolicy(mode, tuple(mx), min(int(max_age), MAX_AGE_SECONDS))


def no_policy_host(domain: str) -> SmtpReply:
    """The deferral of a message whose domain enforces a policy none of its MX hosts match."""
    return SmtpReply(
        code=0,
        text=f"MTA-STS: no MX host of {domain} matches its enforced policy; nothing was sent",
    )


@dataclass(frozen=True)
class KnownPolicy:
    """A domain's policy as this process knows it (None: the domain has none)."""

    policy: StsPolicy | None
    policy_id: str | None
    expires: float
    """Until when ``policy`` may be used without its domain answering (``max_age``)."""
    checked: float
    """When the TXT record was last asked."""


class Unfetched(Exception):
    """The TXT lookup or the policy fetch failed: what was known before still holds."""


class StsPolicies:
    """The MTA-STS policies of recipient domains, looked up and fetched as they are needed."""

    def __init__(self, settings: Settings, verified: ssl.SSLContext) -> None:
        self.resolver = resolver_of(settings)
        """Asks the TXT records (uncached: ``RECHECK_SECONDS`` already spaces the lookups)."""
        self.guard = TargetGuard(settings)
        """Resolves the policy host and refuses private addresses (SSRF)."""
        self.port = settings.mta_sts_port
        self.timeout = FETCH_TIMEOUT_SECONDS
        self.verified = verified
        """Trusts the system's CAs and ``smtp_tls_ca_file``, as the SMTP connections do."""
        self._known: dict[str, KnownPolicy] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def policy(self, domain: str) -> StsPolicy | None:
        """The policy of ``domain`` now (None: it has none, or none valid is known)."""
        now = time.monotonic()
        known = self._known.get(domain)
        if known is not None and now - known.checked < RECHECK_SECONDS:
            return known.policy if known.expires > now else None
        async with self._locks.setdefault(domain, asyncio.Lock()):
            known = self._known.get(domain)
            if known is None or time.monotonic() - known.checked >= RECHECK_SECONDS:
                known = self._known[domain] = await self._refreshed(domain, known)
        return known.policy if known.expires > time.monotonic() else None

    async def _refreshed(self, domain: str, known: KnownPolicy | None) -> KnownPolicy:
        now = time.monotonic()
        kept = known if known is not None and known.expires > now else None
        try:
            policy_id = parse_txt(await self._txt(f"_mta-sts.{domain}"))
            if policy_id is None:  # no (valid) record: a policy still unexpired holds
                return replace(kept, checked=now) if kept else KnownPolicy(None, None, now, now)
            if kept is not None and kept.policy_id == policy_id:
                return replace(kept, checked=now)
            policy = parse_policy(await self._fetch(domain))
            if policy is None:
                raise Unfetched(f"the MTA-STS policy of {domain} is invalid")
        except Unfetched as error:
            log.warning("%s", error, extra={"domain": domain})
            return replace(kept, checked=now) if kept else KnownPolicy(None, None, now, now)
        return KnownPolicy(policy, policy_id, now + policy.max_age, now)

    async def _txt(self, name: str) -> list[str]:
        """The TXT records at ``name`` (empty: none); raises ``Unfetched``."""
        try:
            answer = await self.resolver.resolve(name, "TXT", raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return []
        except dns.exception.DNSException as error:
            raise Unfetched(f"DNS TXT lookup of {name}: {error}") from None
        return [
            b"".join(record.strings).decode("ascii", "replace") for record in answer.rrset or ()
        ]

    async def _fetch(self, domain: str) -> str:
        """The policy file of ``domain``, from a checked address of ``mta-sts.<domain>`` with a
        certificate verified for that name, not following redirects; raises ``Unfetched``."""
        host = f"mta-sts.{domain}"
        try:
            target = await self.guard.target(f"https://{host}:{self.port}{POLICY_PATH}")
            async with httpx.AsyncClient(
                verify=self.verified, timeout=self.timeout, follow_redirects=False
            ) as client:
                request = client.build_request(
                    "GET",
                    target.url,
                    headers={"host": target.host_header},
                    extensions={"sni_hostname": host},
                )
                response = await client.send(request, stream=True)
                try:
                    return await _policy_text(response, host)
                finally:
                    await response.aclose()
        except TargetRefused as refused:
            raise Unfetched(f"MTA-STS policy host {host}: {refused.detail}") from None
        except httpx.HTTPError as error:
            raise Unfetched(f"fetching the MTA-STS policy of {domain}: {error!r}") from None


async def _policy_text(response: httpx.Response, host: str) -> str:
    """The body of a policy response: a 200 ``text/plain`` of at most ``MAX_POLICY_BYTES``."""
    if response.status_code != httpx.codes.OK:
        raise Unfetched(f"{host} answered HTTP {response.status_code} for {POLICY_PATH}")
    media_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "text/plain":
        raise Unfetched(f"{host} served {POLICY_PATH} as {media_type or 'no type'}, not text/plain")
    body = b""
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_POLICY_BYTES:
            raise Unfetched(f"{host}'s policy is larger than {MAX_POLICY_BYTES} bytes")
    return body.decode("utf-8", "replace")
