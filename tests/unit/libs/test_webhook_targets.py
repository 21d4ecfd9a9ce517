"""Which addresses and URLs a webhook may post to (the SSRF guard's decisions)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import pytest

from libs.settings import Settings
from libs.webhook_endpoints import Endpoint
from libs.webhook_targets import (
    TargetRefused,
    address_refusal,
    embedded_ipv4,
    parse_target,
    platform_ports,
)


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.169.254",
        "169.254.1.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "198.18.0.1",
        "fc00::1",
        "fd00:ec2::254",
        "fe80::1",
        "ff02::1",
        "::",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::10.0.0.1",
        "2002:a00:1::",  # 6to4 of 10.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of the metadata address
    ],
)
def test_internal_addresses_are_refused_even_in_dev_mode(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address), dev_mode=True) is not None


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.0.1", "::1", "::ffff:127.0.0.1"])
def test_loopback_only_in_dev_mode(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address), dev_mode=False) is not None
    assert address_refusal(ipaddress.ip_address(address), dev_mode=True) is None


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1::1", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address), dev_mode=False) is None


def test_mapped_forms_unwrap_to_their_ipv4() -> None:
    inner = ipaddress.IPv4Address("10.0.0.1")
    for wrapped in ("::ffff:10.0.0.1", "::10.0.0.1", "2002:a00:1::", "64:ff9b::a00:1"):
        assert embedded_ipv4(ipaddress.ip_address(wrapped)) == inner
    assert embedded_ipv4(ipaddress.ip_address("::1")) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8080/", "https"),
        ("https://127.0.0.1:8080/", "loopback"),
        ("http://169.254.169.254/", "https"),
        ("https://169.254.169.254/latest/meta-data", "metadata"),
        ("https://[::1]/", "loopback"),
        ("file:///etc/passwd", "https"),
        ("https://user:pw@example.com/", "user name or password"),
        ("https:///nohost", "host"),
    ],
)
def test_urls_refused_outside_dev_mode(url: str, reason: str) -> None:
    with pytest.raises(TargetRefused) as refused:
        parse_target(url, dev_mode=False)
    assert reason in refused.value.detail
    assert refused.value.code == "webhook_target_refused"


def test_dev_mode_allows_http_to_loopback_but_not_metadata() -> None:
    assert parse_target("http://127.0.0.1:8080/in", dev_mode=True).port == 8080
    with pytest.raises(TargetRefused, match="metadata"):
        parse_target("http://169.254.169.254/", dev_mode=True)
    with pytest.raises(TargetRefused, match="https or http"):
        parse_target("ftp://example.com/", dev_mode=True)


def test_endpoint_filters_match_types_and_streams() -> None:
    now = datetime.now(UTC)
    endpoint = Endpoint(
        id="e",
        tenant_id="t",
        url="https://x.test/",
        description="",
        event_types=["sendarix.message.delivered", "sendarix.alert.opened"],
        streams=["broadcast"],
        enabled=True,
        disabled_reason=None,
        disabled_at=None,
        previous_secret_expires_at=None,
        created_at=now,
        updated_at=now,
        secret="whsec_x",
    )
    assert endpoint.wants("sendarix.message.delivered", "broadcast")
    assert not endpoint.wants("sendarix.message.delivered", "transactional")
    assert not endpoint.wants("sendarix.message.bounced", "broadcast")
    assert endpoint.wants("sendarix.alert.opened", None)  # a notice has no stream
    everything = endpoint.model_copy(update={"event_types": [], "streams": []})
    assert everything.wants("sendarix.message.bounced", "transactional")


OWN_PORTS = platform_ports(Settings(http_port=8080, kafka_bootstrap="127.0.0.1:9092"))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8080/", "Sendarix's own servers"),  # the gateway itself
        ("http://127.0.0.1:9092/", "Sendarix's own servers"),  # the broker
        ("http://127.0.0.1:5433/", "Sendarix's own servers"),  # the database
        ("http://[::1]/", "privileged loopback port"),
        ("https://localhost.localdomain:22/", None),  # a name: checked once resolved
        ("http://[::ffff:127.0.0.1]:25/", "privileged loopback port"),
    ],
)
def test_dev_mode_keeps_loopback_posts_off_the_platform_and_privileged_ports(
    url: str, why: str | None
) -> None:
    if why is None:
        parse_target(url, dev_mode=True, own_ports=OWN_PORTS)
        return
    with pytest.raises(TargetRefused) as refused:
        parse_target(url, dev_mode=True, own_ports=OWN_PORTS)
    assert why in refused.value.detail


def test_dev_mode_lets_a_developer_receive_on_a_loopback_port_of_their_own() -> None:
    assert parse_target("http://127.0.0.1:3000/hook", dev_mode=True, own_ports=OWN_PORTS)
