"""Routes as data: presets, what a route must be to work, fallbacks without cycles."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from libs.ip_pools import IpPool, built_in_pools
from libs.relay_presets import PRESETS
from libs.routes import (
    RouteFields,
    TenantRoute,
    built_in_routes,
    fallback_chain,
    reference_refusal,
    shape_refusal,
)
from libs.settings import Settings
from schemas.pipeline import AuthMethod, RouteKind, TlsMode

SETTINGS = Settings(relay_host="relay.internal", relay_port=1025, mx_port=2500)


@pytest.mark.parametrize(
    ("preset", "host", "port", "tls", "auth"),
    [
        ("gmail", "smtp.gmail.com", 587, TlsMode.STARTTLS, AuthMethod.PLAIN),
        ("google-workspace", "smtp-relay.gmail.com", 587, TlsMode.STARTTLS, AuthMethod.PLAIN),
        ("outlook", "smtp-mail.outlook.com", 587, TlsMode.STARTTLS, AuthMethod.LOGIN),
        ("yahoo", "smtp.mail.yahoo.com", 465, TlsMode.IMPLICIT, AuthMethod.PLAIN),
        ("office365", "smtp.office365.com", 587, TlsMode.STARTTLS, AuthMethod.LOGIN),
    ],
)
def test_a_preset_fills_in_the_provider_s_server_tls_and_auth(
    preset: str, host: str, port: int, tls: TlsMode, auth: AuthMethod
) -> None:
    fields = RouteFields.model_validate({"preset": preset, "username": "me@example.test"})
    assert (fields.kind, fields.host, fields.port, fields.tls_mode, fields.auth) == (
        RouteKind.RELAY,
        host,
        port,
        tls,
        auth,
    )
    assert shape_refusal(fields) is None
    assert PRESETS[preset].sources and PRESETS[preset].limits.recipients_per_day


def test_the_providers_documented_limits_travel_with_the_presets() -> None:
    assert PRESETS["gmail"].limits.recipients_per_day == 500
    assert PRESETS["google-workspace"].limits.recipients_per_day == 10_000
    assert PRESETS["outlook"].limits.recipients_per_day == 300
    office = PRESETS["office365"].limits
    assert (office.recipients_per_day, office.messages_per_minute) == (10_000, 30)


def test_what_a_route_gives_wins_over_its_preset_and_unknown_presets_are_refused() -> None:
    fields = RouteFields.model_validate({"preset": "gmail", "username": "u", "port": 465})
    assert (fields.host, fields.port) == ("smtp.gmail.com", 465)
    with pytest.raises(ValidationError, match="presets"):
        RouteFields.model_validate({"preset": "hotmail"})


@pytest.mark.parametrize(
    ("fields", "code", "pointer"),
    [
        ({"kind": "relay"}, "host_required", "/host"),
        ({"kind": "mx", "host": "mx.example.test"}, "host_not_allowed", "/host"),
        ({"kind": "sandbox", "port": 2525}, "port_not_allowed", "/port"),
        ({"kind": "mx", "auth": "plain", "username": "u"}, "auth_not_allowed", "/auth"),
        (
            {"host": "relay.example.test", "auth": "plain", "username": "u"},
            "auth_requires_tls",
            "/tls",
        ),
        (
            {
                "host": "relay.example.test",
                "auth": "login",
                "username": "u",
                "tls": "opportunistic",
            },
            "auth_requires_tls",
            "/tls",
        ),
        (
            {"host": "relay.example.test", "tls": "starttls", "auth": "plain"},
            "username_required",
            "/username",
        ),
        ({"host": "relay.example.test", "password": "secret"}, "auth_required", "/password"),
    ],
)
def test_a_route_that_could_not_work_is_refused(
    fields: dict[str, Any], code: str, pointer: str
) -> None:
    refused = shape_refusal(RouteFields.model_validate(fields))
    assert refused is not None and (refused.code, refused.field) == (code, pointer)


def test_hosts_are_stored_normalised_and_mx_defaults_to_opportunistic_tls() -> None:
    assert RouteFields(host="Relay.Example.TEST.").host == "relay.example.test"
    assert RouteFields(host="127.0.0.1").host == "127.0.0.1"
    assert RouteFields(host="localhost").host == "localhost"
    assert RouteFields(kind=RouteKind.MX).tls_mode is TlsMode.OPPORTUNISTIC
    assert RouteFields(host="relay.example.test").tls_mode is TlsMode.NONE
    with pytest.raises(ValidationError):
        RouteFields(host="not a host")


def stored(name: str, fallback: str | None = None, **fields: Any) -> TenantRoute:
    values = {"kind": "relay", "host": "r.example.test", "port": 25, "tls": "none"}
    return TenantRoute.model_validate(
        values | {"name": name, "fallback": fallback, "timeout_seconds": 30} | fields
    )


def book(*routes: TenantRoute) -> dict[str, TenantRoute]:
    return built_in_routes(SETTINGS) | {route.name: route for route in routes}


POOLS: dict[str, IpPool] = built_in_pools(SETTINGS) | {"warm": IpPool(name="warm")}


def relay(**fields: Any) -> RouteFields:
    return RouteFields.model_validate({"host": "relay.example.test"} | fields)


@pytest.mark.parametrize(
    ("name", "fields", "code", "pointer"),
    [
        ("simulator", relay(), "reserved_name", "/name"),
        ("presets", relay(), "reserved_name", "/name"),
        ("a", relay(fallback="nowhere"), "unknown_route", "/fallback"),
        ("a", relay(fallback="a"), "fallback_cycle", "/fallback"),
        ("a", relay(fallback="c"), "fallback_cycle", "/fallback"),
        ("a", relay(pool="cold"), "unknown_pool", "/pool"),
        ("a", relay(pool="security"), "pool_not_allowed", "/pool"),
    ],
)
def test_a_route_naming_what_the_tenant_lacks_or_closing_a_cycle_is_refused(
    name: str, fields: RouteFields, code: str, pointer: str
) -> None:
    routes = book(stored("b", fallback="a"), stored("c", fallback="b"))  # c → b → a
    refused = reference_refusal(name, fields, routes, POOLS)
    assert refused is not None and (refused.code, refused.field) == (code, pointer)


def test_a_route_may_fall_back_to_a_chain_or_a_built_in_and_use_any_pool_but_security() -> None:
    routes = book(stored("b", fallback="default-relay"), stored("c", fallback="b"))
    assert reference_refusal("a", relay(fallback="c", pool="warm"), routes, POOLS) is None
    assert reference_refusal("a", relay(fallback="simulator", pool="bulk"), routes, POOLS) is None
    assert fallback_chain("c", routes) == ["b", "default-relay"]
    refused = reference_refusal("a", RouteFields(), routes, POOLS)
    assert refused is not None and refused.code == "host_required"


def test_a_fallback_chain_stops_before_a_cycle_or_a_missing_route() -> None:
    routes = book(
        stored("a", fallback="b"), stored("b", fallback="a"), stored("x", fallback="gone")
    )
    assert fallback_chain("a", routes) == ["b"]
    assert fallback_chain("x", routes) == []


def test_the_built_in_routes_come_from_the_settings_and_sandbox_and_mx_from_settings_too() -> None:
    built_in = built_in_routes(SETTINGS)
    assert built_in["default-relay"].server(SETTINGS) == ("relay.internal", 1025)
    assert built_in["simulator"].server(SETTINGS) == (
        SETTINGS.simulator_host,
        SETTINGS.simulator_port,
    )
    assert stored("direct", kind="mx", host="", port=None).server(SETTINGS) == ("", 2500)
    assert stored("direct", kind="mx", host="", port=2526).server(SETTINGS) == ("", 2526)
    assert stored("own", port=None).server(SETTINGS) == ("r.example.test", 25)
