"""Where one message's SMTP connection goes: the hosts to try, in order, and their site.

A site is what traffic shaping counts against: the server of a relay or the simulator, or for
direct delivery the recipient domain's MX host group (every domain hosted by one provider shares
its limits and its throttling).

Direct delivery (RFC 5321 section 5.1): the domain's MX hosts by preference (random among
equal ones), each host's addresses in turn; without MX records the domain's own addresses (the
implicit MX). A null MX (RFC 7505) or a domain that does not exist is a bounce; a lookup that
failed (SERVFAIL, timeout) is a deferral. Answers are kept per process for their TTL (at most an
hour; a negative one a minute), so a busy domain costs one lookup per TTL, not one per message.
A domain's MTA-STS policy (``mta_sts``) then narrows its hosts and requires verified TLS.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field, replace
from ipaddress import ip_address
from itertools import groupby
from pathlib import Path

import dns.asyncresolver
import dns.exception
import dns.rdtypes.ANY.MX
import dns.resolver

from libs.domain_verification import resolver_of
from libs.settings import Settings
from libs.webhook_targets import address_refusal
from schemas.pipeline import Route, RouteKind, SmtpReply
from services.sender.mta_sts import StsMode, StsPolicies, StsPolicy, no_policy_host
from services.sender.tls_auth import TlsContexts

log = logging.getLogger(__name__)

MAX_TTL_SECONDS = 3600
NEGATIVE_TTL_SECONDS = 60
NULL_MX = SmtpReply(
    code=556,
    enhanced_status="5.1.10",
    text="the recipient domain accepts no mail (null MX, RFC 7505)",
)
NO_SUCH_DOMAIN = SmtpReply(
    code=550, enhanced_status="5.1.2", text="the recipient domain does not exist (NXDOMAIN)"
)
NO_MAIL_HOST = SmtpReply(
    code=550, enhanced_status="5.1.2", text="the recipient domain has no MX and no address"
)
NON_PUBLIC_MX = SmtpReply(
    code=550,
    enhanced_status="5.4.4",
    text="the recipient domain's mail hosts are private, link-local or reserved addresses",
)
PROVIDERS = {
    "google.com": "google",
    "googlemail.com": "google",
    "protection.outlook.com": "microsoft",
    "outlook.com": "microsoft",
    "yahoodns.net": "yahoo",
    "icloud.com": "apple",
    "apple.com": "apple",
}
"""MX host suffixes of the big providers: their domains share one site (one set of limits)."""


@dataclass(frozen=True)
class Destination:
    """The servers to offer one message to, best first, and the site they belong to.

    For direct delivery ``hosts`` holds addresses (looked up with the platform's resolver) and
    ``tls_names`` the MX name of each, which TLS names and verifies; ``refusal`` is the outcome
    when there is nowhere to go (no hosts). ``mta_sts`` is the mode of the recipient domain's
    MTA-STS policy (None: it has none)."""

    site: str
    hosts: list[tuple[str, int]]
    tls_names: dict[str, str] = field(default_factory=dict)
    refusal: SmtpReply | None = None
    mta_sts: StsMode | None = None

    @property
    def tls_required(self) -> bool:
        """Whether every connection must be STARTTLS verified for the host's name."""
        return self.mta_sts is StsMode.ENFORCE


def server_site(host: str, port: int) -> str:
    """The site of one fixed server (a relay, the simulator)."""
    return f"{host.lower()}:{port}"


def mx_site(mx_hosts: list[str]) -> str:
    """The site of an MX host group: the provider's name when it is a known one, else the
    sorted host names."""
    names = sorted({host.lower().rstrip(".") for host in mx_hosts})
    providers = {_provider(name) for name in names}
    if len(providers) == 1 and None not in providers:
        return str(providers.pop())
    return ",".join(names)


def _provider(host: str) -> str | None:
    for suffix, provider in PROVIDERS.items():
        if host == suffix or host.endswith("." + suffix):
            return provider
    return None


@dataclass(frozen=True)
class MailHost:
    """One MX host (or the domain itself, for the implicit MX) and its addresses."""

    preference: int
    name: str
    addresses: list[str]


@dataclass(frozen=True)
class MxAnswer:
    """What DNS said of a domain's mail hosts: the hosts, or a bounce or deferral reply."""

    hosts: list[MailHost]
    refusal: SmtpReply | None
    expires: float


class Unanswered(Exception):
    """The lookup failed (SERVFAIL, refused, timeout): nothing is known, try later."""


class MxLookup:
    """MX lookups through one resolver, with their answers kept for their TTL."""

    def __init__(self, resolver: dns.asyncresolver.Resolver, dev_mode: bool) -> None:
        self.resolver = resolver
        self.dev_mode = dev_mode
        """Loopback MX hosts are fine in dev mode (tests); private ones never are."""
        self._answers: dict[str, MxAnswer] = {}

    async def destination(self, domain: str, port: int) -> Destination:
        """Where mail for ``domain`` goes (on ``port``), best host first."""
        domain = domain.lower().rstrip(".")
        answer = self._answers.get(domain)
        if answer is None or answer.expires <= time.monotonic():
            try:
                answer = await self._lookup(domain)
            except Unanswered as error:
                return Destination(domain, [], refusal=SmtpReply(code=0, text=str(error)))
            self._answers[domain] = answer
        if answer.refusal is not None:
            return Destination(domain, [], refusal=answer.refusal)
        ordered: list[MailHost] = []
        for _, equal in groupby(answer.hosts, key=lambda host: host.preference):
            ordered += random.sample(group := list(equal), k=len(group))
        site = mx_site([host.name for host in answer.hosts])
        hosts = [
            (address, port)
            for host in ordered
            for address in host.addresses
            if address_refusal(ip_address(address), self.dev_mode) is None
        ]
        if not hosts:  # a domain pointing its MX into our network: never connect there
            return Destination(site, [], refusal=NON_PUBLIC_MX)
        return Destination(
            site, hosts, {address: host.name for host in answer.hosts for address in host.addresses}
        )

    async def _lookup(self, domain: str) -> MxAnswer:
        found = await self._query(domain, "MX")
        if found is None:
            return self._refused(NO_SUCH_DOMAIN)
        records, ttl = found
        exchanges = [r for r in records if isinstance(r, dns.rdtypes.ANY.MX.MX)]
        if any(r.exchange.to_text() == "." for r in exchanges):
            return MxAnswer([], NULL_MX, time.monotonic() + min(ttl, MAX_TTL_SECONDS))
        if not exchanges:  # the implicit MX: the domain itself
            exchanges_by_name = [(0, domain)]
        else:
            exchanges_by_name = sorted(
                (r.preference, r.exchange.to_text(omit_final_dot=True).lower()) for r in exchanges
            )
        hosts: list[MailHost] = []
        failed: Unanswered | None = None
        for preference, name in exchanges_by_name:
            try:
                addresses, address_ttl = await self._addresses(name)
            except Unanswered as error:  # the other hosts may do
                failed = error
                continue
            ttl = min(ttl, address_ttl)
            if addresses:
                hosts.append(MailHost(preference, name, addresses))
        if not hosts:
            if failed is not None:
                raise failed
            return self._refused(NO_MAIL_HOST)
        return MxAnswer(hosts, None, time.monotonic() + min(ttl, MAX_TTL_SECONDS))

    @staticmethod
    def _refused(reply: SmtpReply) -> MxAnswer:
        return MxAnswer([], reply, time.monotonic() + NEGATIVE_TTL_SECONDS)

    async def _addresses(self, name: str) -> tuple[list[str], int]:
        """The IPv4 then IPv6 addresses of ``name``, and their shortest TTL."""
        addresses: list[str] = []
        ttl = MAX_TTL_SECONDS
        for kind in ("A", "AAAA"):
            found = await self._query(name, kind)
            if found is not None:
                addresses += [record.to_text() for record in found[0]]
                ttl = min(ttl, found[1])
        return addresses, ttl

    async def _query(self, name: str, kind: str) -> tuple[list[dns.rdata.Rdata], int] | None:
        """The records of ``kind`` at ``name`` (empty: none of that type) and their TTL, or
        None when the name does not exist; raises ``Unanswered``."""
        try:
            answer = await self.resolver.resolve(name, kind, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return None
        except dns.resolver.NoNameservers:
            raise Unanswered(f"DNS {kind} lookup of {name}: no nameserver answered") from None
        except dns.exception.Timeout:
            raise Unanswered(f"DNS {kind} lookup of {name} timed out") from None
        except dns.exception.DNSException as error:
            raise Unanswered(f"DNS {kind} lookup of {name}: {error}") from None
        if answer.rrset is None:
            return [], NEGATIVE_TTL_SECONDS
        return list(answer.rrset), answer.rrset.ttl


_lookups: dict[tuple[str, float, bool], MxLookup] = {}
"""One lookup (resolver and answers) per nameserver configuration, for the process."""


def mx_lookup(settings: Settings) -> MxLookup:
    """The process's MX lookup for the nameservers ``settings`` names."""
    key = (settings.dns_nameservers, settings.dns_timeout_seconds, settings.dev_mode)
    if (lookup := _lookups.get(key)) is None:
        lookup = _lookups[key] = MxLookup(resolver_of(settings), settings.dev_mode)
    return lookup


_policies: dict[tuple[str, float, bool, Path | None, int], StsPolicies] = {}
"""One MTA-STS policy cache per resolver and trust configuration, for the process."""


def sts_policies(settings: Settings) -> StsPolicies:
    """The process's MTA-STS policies, as ``settings`` has them looked up and fetched."""
    key = (
        settings.dns_nameservers,
        settings.dns_timeout_seconds,
        settings.dev_mode,
        settings.smtp_tls_ca_file,
        settings.mta_sts_port,
    )
    if (policies := _policies.get(key)) is None:
        verified = TlsContexts(settings.smtp_tls_ca_file).verified
        policies = _policies[key] = StsPolicies(settings, verified)
    return policies


def under_policy(destination: Destination, domain: str, policy: StsPolicy | None) -> Destination:
    """``destination`` as ``domain``'s MTA-STS policy has it.

    ``enforce``: only the MX hosts the policy names, each requiring verified STARTTLS, or a
    deferral when none is named. ``testing``: unchanged, the hosts it would refuse logged.
    """
    if policy is None or destination.refusal is not None:
        return destination
    if policy.mode is StsMode.NONE:
        return replace(destination, mta_sts=policy.mode)
    matching = [
        (address, port)
        for address, port in destination.hosts
        if policy.matches(destination.tls_names.get(address, address))
    ]
    if policy.mode is StsMode.TESTING:
        if len(matching) < len(destination.hosts):
            log.warning(
                "MTA-STS testing: some MX hosts of %s are not in its policy",
                domain,
                extra={"domain": domain},
            )
        return replace(destination, mta_sts=policy.mode)
    if not matching:
        return replace(destination, hosts=[], refusal=no_policy_host(domain), mta_sts=policy.mode)
    return replace(destination, hosts=matching, mta_sts=policy.mode)


async def resolve(route: Route, recipient_domain: str, settings: Settings) -> Destination:
    """The destination of a message to ``recipient_domain`` over ``route``."""
    if route.kind is RouteKind.MX:
        domain = recipient_domain.lower().rstrip(".")
        destination = await mx_lookup(settings).destination(domain, route.port)
        if destination.refusal is not None:
            return destination
        return under_policy(destination, domain, await sts_policies(settings).policy(domain))
    return Destination(server_site(route.host, route.port), [(route.host, route.port)])
