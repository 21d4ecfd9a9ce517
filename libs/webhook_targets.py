"""Where a webhook may post: the guard that keeps tenants' URLs off our own network (SSRF).

Only ``https`` (and ``http`` in dev mode) URLs without userinfo; the host's EVERY address must
be public. Loopback, private, link-local, multicast, unspecified, reserved and shared (CGNAT)
addresses are refused, also when wrapped in an IPv6 form (IPv4-mapped or -compatible, 6to4,
NAT64, Teredo), and so are the cloud metadata addresses. Dev mode (every local profile) allows
loopback only, and there only on unprivileged ports none of the platform's own servers listens
on (the gateway, the broker, the database, …): a developer's receiver on ``localhost:3000`` is
fine, Sendarix's own API is not. The check runs when an endpoint is saved and again before every
post, on the addresses resolved then: the post goes to the checked address itself (``Host``
header and TLS SNI carry the name), so a name that changes its answer after the check (DNS
rebinding) cannot steer the post elsewhere. A name that does not resolve yet is accepted when
saved (every post checks again).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TypeAlias

import dns.asyncresolver
import dns.exception
import dns.resolver
import httpx

from libs.domain_verification import resolver_of
from libs.settings import Settings

Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

REFUSED = "webhook_target_refused"
UNRESOLVED = "webhook_target_unresolved"
METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
SHARED = ipaddress.ip_network("100.64.0.0/10")
MAX_URL_LENGTH = 2048
FIRST_UNPRIVILEGED_PORT = 1024
DEFAULT_PORTS = {"http": 80, "https": 443}


class TargetRefused(ValueError):
    """A URL a webhook may not post to; ``code`` and ``detail`` say why."""

    def __init__(self, detail: str, code: str = REFUSED) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Target:
    """Where one post goes: the checked address, and the name the server knows itself by."""

    url: httpx.URL
    """The endpoint's URL with its host replaced by the checked address."""
    host_header: str
    sni_hostname: str | None


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, NAT64, Teredo)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in network for network in NAT64):
        return ipaddress.IPv4Address(address.packed[-4:])
    if address.packed[:12] == bytes(12) and int(address) > 1:  # ::a.b.c.d (deprecated form)
        return ipaddress.IPv4Address(address.packed[-4:])
    return None


def address_refusal(address: Address, dev_mode: bool) -> str | None:
    """Why a webhook may not post to ``address`` (None: it may), e.g. ``10.0.0.1, a private
    address``."""
    inner = embedded_ipv4(address)
    if inner is not None:
        why = address_refusal(inner, dev_mode)
        return f"{address}, which embeds {why}" if why else None
    if address in METADATA:
        return f"{address}, a cloud metadata address"
    if address.is_loopback:
        return None if dev_mode else f"{address}, a loopback address"
    for refused, what in (
        (address.is_unspecified, "unspecified"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (isinstance(address, ipaddress.IPv4Address) and address in SHARED, "shared (CGNAT)"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
        (not address.is_global, "non-public"),
    ):
        if refused:
            return f"{address}, {'an' if what[0] in 'aeiu' else 'a'} {what} address"
    return None


def loopback_port_refusal(address: Address, port: int, own_ports: frozenset[int]) -> str | None:
    """Why a loopback ``address`` (one dev mode allows) may still not take posts on ``port``."""
    inner = embedded_ipv4(address) or address
    if not inner.is_loopback:
        return None
    if port < FIRST_UNPRIVILEGED_PORT:
        return f"port {port} of {address}, a privileged loopback port"
    if port in own_ports:
        return f"port {port} of {address}, where one of Sendarix's own servers listens"
    return None


def platform_ports(settings: Settings) -> frozenset[int]:
    """The loopback ports the platform's own servers listen on, as ``settings`` has them."""
    urls = (f"kafka://{settings.kafka_bootstrap}", settings.database_url, settings.otlp_endpoint)
    found = {
        settings.http_port,
        settings.smtp_submission_port,
        settings.feedback_port,
        settings.simulator_port,
        settings.relay_port,
    }
    for url in urls:
        try:
            port = httpx.URL(url.split(",")[0]).port
        except (httpx.InvalidURL, ValueError):
            continue
        if port is not None:
            found.add(port)
    return frozenset(found)


def parse_target(url: str, dev_mode: bool, own_ports: frozenset[int] = frozenset()) -> httpx.URL:
    """``url`` when its form may be posted to (scheme, no userinfo, a host); raises
    ``TargetRefused``. An address literal is checked here, a name once resolved."""
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as error:
        raise TargetRefused(f"not a URL: {error}") from None
    schemes = ("https", "http") if dev_mode else ("https",)
    if parsed.scheme not in schemes:
        raise TargetRefused(f"the URL must be {' or '.join(schemes)}, not {parsed.scheme!r}")
    if parsed.userinfo:
        raise TargetRefused("the URL may not carry a user name or password")
    if not parsed.host:
        raise TargetRefused("the URL has no host")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise TargetRefused(f"no such port: {parsed.port}")
    literal = address_literal(parsed.host)
    if literal is not None and (why := address_refusal(literal, dev_mode)):
        raise TargetRefused(f"the URL points at {why}")
    if literal is not None and (why := loopback_port_refusal(literal, port_of(parsed), own_ports)):
        raise TargetRefused(f"the URL points at {why}")
    return parsed


def port_of(url: httpx.URL) -> int:
    """The port a post to ``url`` connects to."""
    return url.port or DEFAULT_PORTS[url.scheme]


def address_literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def resolve(resolver: dns.asyncresolver.Resolver, host: str) -> list[Address]:
    """Every A and AAAA address of ``host`` (empty: the name does not resolve)."""
    found: list[Address] = []
    for kind in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(host, kind, raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as error:
            raise TargetRefused(f"{host} could not be resolved: {error}", UNRESOLVED) from None
        except dns.exception.DNSException as error:
            raise TargetRefused(f"{host} is not a host name: {error}") from None
        found += [ipaddress.ip_address(rdata.to_text()) for rdata in answer.rrset or ()]
    return found


RESOLVED_HOSTS_CACHED = 4096


class TargetGuard:
    """Checks endpoint URLs with the platform's settings and resolver."""

    def __init__(self, settings: Settings) -> None:
        self.dev_mode = settings.dev_mode
        self.own_ports = platform_ports(settings)
        self.resolver = resolver_of(settings)
        # Answers kept for their TTL: a post needs no lookup of its own, and what is posted to
        # is still the address just checked (the connection goes to that address itself).
        self.resolver.cache = dns.resolver.LRUCache(RESOLVED_HOSTS_CACHED)

    async def check(self, url: str) -> str:
        """``url`` as saved when it may be posted to; raises ``TargetRefused``."""
        parsed = parse_target(url, self.dev_mode, self.own_ports)
        if address_literal(parsed.host) is None:
            try:
                await self._addresses(parsed.host, port_of(parsed))
            except TargetRefused as refused:
                if refused.code != UNRESOLVED:
                    raise
        return str(parsed)

    async def check_host(self, host: str, port: int) -> None:
        """Whether a server the platform connects to for a tenant (a relay route) may be
        ``host``: as a webhook target, never a private, link-local or metadata address, nor one
        of the platform's own ports; a name that does not resolve yet passes (checked again by
        DNS when used). Raises ``TargetRefused``."""
        literal = address_literal(host)
        if literal is not None:
            why = address_refusal(literal, self.dev_mode) or loopback_port_refusal(
                literal, port, self.own_ports
            )
            if why:
                raise TargetRefused(f"{host} is {why}")
            return
        try:
            await self._addresses(host, port)
        except TargetRefused as refused:
            if refused.code != UNRESOLVED:
                raise

    async def target(self, url: str) -> Target:
        """Where to post for ``url`` now: its host resolved and every address checked."""
        parsed = parse_target(url, self.dev_mode, self.own_ports)
        address = (
            address_literal(parsed.host) or (await self._addresses(parsed.host, port_of(parsed)))[0]
        )
        return Target(
            url=parsed.copy_with(host=str(address)),
            host_header=parsed.netloc.decode("ascii"),
            sni_hostname=parsed.host if address_literal(parsed.host) is None else None,
        )

    async def _addresses(self, host: str, port: int) -> list[Address]:
        addresses = await resolve(self.resolver, host)
        if not addresses:
            raise TargetRefused(f"{host} does not resolve", UNRESOLVED)
        for address in addresses:
            why = address_refusal(address, self.dev_mode) or loopback_port_refusal(
                address, port, self.own_ports
            )
            if why:
                raise TargetRefused(f"{host} resolves to {why}")
        return addresses
