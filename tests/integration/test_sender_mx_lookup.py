"""MX lookups of direct delivery against a real DNS server on loopback (``tests/dns_server.py``)."""

from __future__ import annotations

import time
import uuid

import pytest

from libs.settings import Settings
from schemas.events import MessageState
from schemas.pipeline import Route, RouteKind
from services.sender.classify import classify_reply
from services.sender.destinations import MAX_TTL_SECONDS, MxLookup, mx_lookup, resolve
from tests.dns_server import LoopbackDns

pytestmark = pytest.mark.integration

PORT = 2525


def fresh_domain() -> str:
    return f"mx-{uuid.uuid4().hex[:8]}.test"


def lookup_of(dns_zone: LoopbackDns, dev_mode: bool) -> MxLookup:
    settings = Settings(
        dns_nameservers=dns_zone.nameserver, dns_timeout_seconds=2.0, dev_mode=dev_mode
    )
    return mx_lookup(settings)


@pytest.fixture
def lookup(dns_zone: LoopbackDns) -> MxLookup:
    """Dev mode, as every test stack: its loopback MX hosts are reachable."""
    return lookup_of(dns_zone, dev_mode=True)


async def test_mail_hosts_inside_the_platforms_network_are_never_connected_to(
    dns_zone: LoopbackDns, lookup: MxLookup
) -> None:
    domain = fresh_domain()
    dns_zone.add_mx(domain, f"inside.{domain}", 10)
    dns_zone.add_mx(domain, f"metadata.{domain}", 20)
    dns_zone.add_address(f"inside.{domain}", "10.0.0.5")
    dns_zone.add_address(f"metadata.{domain}", "169.254.169.254")
    loopback = fresh_domain()
    dns_zone.add_mx(loopback, f"mx.{loopback}", 10)
    dns_zone.add_address(f"mx.{loopback}", "127.0.0.5")

    private = await lookup.destination(domain, PORT)
    in_production = await lookup_of(dns_zone, dev_mode=False).destination(loopback, PORT)

    for found in (private, in_production):
        assert found.hosts == []
        assert found.refusal is not None and found.refusal.enhanced_status == "5.4.4"


async def test_hosts_come_in_preference_order_with_their_addresses(
    dns_zone: LoopbackDns, lookup: MxLookup
) -> None:
    domain = fresh_domain()
    dns_zone.add_mx(domain, f"backup.{domain}", 20)
    dns_zone.add_mx(domain, f"main.{domain}", 10)
    dns_zone.add_address(f"main.{domain}", "127.0.0.5")
    dns_zone.add_address(f"main.{domain}", "::1")
    dns_zone.add_address(f"backup.{domain}", "127.0.0.6")

    found = await lookup.destination(domain.upper(), PORT)

    assert found.hosts == [("127.0.0.5", PORT), ("::1", PORT), ("127.0.0.6", PORT)]
    assert found.tls_names["127.0.0.6"] == f"backup.{domain}"
    assert found.site == f"backup.{domain},main.{domain}"
    assert found.refusal is None


async def test_equal_preferences_share_the_load(dns_zone: LoopbackDns, lookup: MxLookup) -> None:
    domain = fresh_domain()
    for index in range(4):
        dns_zone.add_mx(domain, f"mx{index}.{domain}", 10)
        dns_zone.add_address(f"mx{index}.{domain}", f"127.0.1.{index}")
    firsts = {(await lookup.destination(domain, PORT)).hosts[0] for _ in range(40)}
    assert len(firsts) > 1


async def test_without_mx_the_domain_itself_is_the_mail_host(
    dns_zone: LoopbackDns, lookup: MxLookup
) -> None:
    domain = fresh_domain()
    dns_zone.add_address(domain, "127.0.0.7")
    found = await lookup.destination(domain, PORT)
    assert found.hosts == [("127.0.0.7", PORT)] and found.site == domain


@pytest.mark.parametrize(
    ("records", "code", "status"),
    [
        pytest.param([(".", 0)], 556, "5.1.10", id="null-mx"),
        pytest.param([], 550, "5.1.2", id="nxdomain"),
    ],
)
async def test_a_domain_taking_no_mail_bounces(
    dns_zone: LoopbackDns,
    lookup: MxLookup,
    records: list[tuple[str, int]],
    code: int,
    status: str,
) -> None:
    domain = fresh_domain()
    for exchange, preference in records:
        dns_zone.add_mx(domain, exchange, preference)
    found = await lookup.destination(domain, PORT)
    assert found.hosts == [] and found.refusal is not None
    assert (found.refusal.code, found.refusal.enhanced_status) == (code, status)
    assert classify_reply(found.refusal) is MessageState.BOUNCED


async def test_a_failed_lookup_is_a_deferral_and_not_kept(
    dns_zone: LoopbackDns, lookup: MxLookup
) -> None:
    domain = fresh_domain()
    dns_zone.fail(domain)
    found = await lookup.destination(domain, PORT)
    assert found.refusal is not None and found.refusal.code == 0
    assert classify_reply(found.refusal) is MessageState.DEFERRED

    dns_zone.clear(domain)
    dns_zone.add_mx(domain, f"mx.{domain}")
    dns_zone.add_address(f"mx.{domain}", "127.0.0.8")
    assert (await lookup.destination(domain, PORT)).hosts == [("127.0.0.8", PORT)]


async def test_answers_are_kept_for_their_ttl_at_most_an_hour(
    dns_zone: LoopbackDns, lookup: MxLookup
) -> None:
    domain = fresh_domain()
    dns_zone.add_mx(domain, f"mx.{domain}", ttl=86400)
    dns_zone.add_address(f"mx.{domain}", "127.0.0.9", ttl=86400)
    first = await lookup.destination(domain, PORT)
    dns_zone.clear(domain)
    assert await lookup.destination(domain, PORT) == first
    expires = lookup._answers[domain].expires
    assert expires <= time.monotonic() + MAX_TTL_SECONDS


async def test_known_providers_share_one_site(dns_zone: LoopbackDns, lookup: MxLookup) -> None:
    domain = fresh_domain()
    for index, exchange in enumerate(("aspmx.l.google.com", "alt1.aspmx.l.google.com")):
        dns_zone.add_mx(domain, exchange, 10 * (index + 1))
        dns_zone.add_address(exchange, f"127.0.2.{index}")
    assert (await lookup.destination(domain, PORT)).site == "google"


async def test_relay_routes_need_no_lookup() -> None:
    route = Route(name="relay", kind=RouteKind.RELAY, host="Smtp.Example.test", port=587, pool="p")
    found = await resolve(route, "anything.test", Settings(dns_nameservers="192.0.2.1"))
    assert found.hosts == [("Smtp.Example.test", 587)] and found.site == "smtp.example.test:587"
