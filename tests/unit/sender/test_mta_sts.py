"""MTA-STS (RFC 8461): the TXT record, the policy file, MX matching and what a policy does to a
destination."""

from __future__ import annotations

import pytest

from schemas.events import MessageState
from services.sender.classify import classify_reply
from services.sender.destinations import Destination, under_policy
from services.sender.mta_sts import (
    MAX_AGE_SECONDS,
    StsMode,
    StsPolicy,
    parse_policy,
    parse_txt,
)

POLICY = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 86400\n"


@pytest.mark.parametrize(
    ("records", "policy_id"),
    [
        pytest.param(["v=STSv1; id=20160831085700Z;"], "20160831085700Z", id="rfc-example"),
        pytest.param(["v=STSv1;id=abc"], "abc", id="no-spaces"),
        pytest.param(["v=STSv1; id=abc; ext=1"], "abc", id="extension-field"),
        pytest.param(["v=spf1 -all", "v=STSv1; id=abc"], "abc", id="other-records-ignored"),
        pytest.param(["v=STSv1; id=a", "v=STSv1; id=b"], None, id="two-records-no-policy"),
        pytest.param(["v=STSv1"], None, id="no-id"),
        pytest.param(["v=STSv1; id=not-alnum"], None, id="id-not-alphanumeric"),
        pytest.param(["v=STSv1; id=" + "a" * 33], None, id="id-too-long"),
        pytest.param(["v=STSv10; id=abc"], None, id="other-version"),
        pytest.param([], None, id="none"),
    ],
)
def test_the_txt_record_names_the_policy_id(records: list[str], policy_id: str | None) -> None:
    assert parse_txt(records) == policy_id


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_policy_reads_with_either_line_ending(newline: str) -> None:
    policy = parse_policy(POLICY.replace("\n", newline))
    assert policy == StsPolicy(StsMode.ENFORCE, ("mail.example.com", "*.example.net"), 86400)


def test_unknown_fields_are_ignored_and_names_are_case_folded() -> None:
    policy = parse_policy(POLICY + "future: thing\nmx: MX2.Example.com.\n")
    assert policy is not None and policy.mx[-1] == "mx2.example.com"


def test_a_max_age_beyond_a_year_is_clamped_to_it() -> None:
    policy = parse_policy(POLICY.replace("86400", "9999999999"))
    assert policy is not None and policy.max_age == MAX_AGE_SECONDS


@pytest.mark.parametrize(
    ("change", "into"),
    [
        pytest.param("version: STSv1", "version: STSv2", id="version"),
        pytest.param("mode: enforce", "mode: strict", id="mode"),
        pytest.param("max_age: 86400", "max_age: -1", id="negative-max-age"),
        pytest.param("max_age: 86400", "max_age: 12345678901", id="max-age-over-10-digits"),
        pytest.param("max_age: 86400", "", id="no-max-age"),
        pytest.param("mx: mail.example.com", "mx: mail..example.com", id="bad-mx"),
        pytest.param("mx: *.example.net", "mx: a.*.example.net", id="inner-wildcard"),
    ],
)
def test_an_invalid_policy_is_no_policy(change: str, into: str) -> None:
    assert parse_policy(POLICY.replace(change, into)) is None


def test_only_mode_none_may_name_no_mx() -> None:
    without_mx = "version: STSv1\nmode: {}\nmax_age: 60\n"
    assert parse_policy(without_mx.format("enforce")) is None
    assert parse_policy(without_mx.format("none")) == StsPolicy(StsMode.NONE, (), 60)


@pytest.mark.parametrize(
    ("host", "matches"),
    [
        ("mail.example.com", True),
        ("MAIL.example.com.", True),
        ("other.example.com", False),
        ("mx1.example.net", True),
        ("a.b.example.net", False),
        ("example.net", False),
        ("mx1.example.net.evil.test", False),
    ],
)
def test_wildcards_match_exactly_one_leftmost_label(host: str, matches: bool) -> None:
    policy = parse_policy(POLICY)
    assert policy is not None and policy.matches(host) is matches


def mx_destination() -> Destination:
    return Destination(
        "site",
        [("192.0.2.1", 25), ("192.0.2.2", 25)],
        {"192.0.2.1": "mail.example.com", "192.0.2.2": "backup.elsewhere.test"},
    )


def policy_of(mode: StsMode) -> StsPolicy:
    return StsPolicy(mode, ("mail.example.com",), 60)


def test_enforce_keeps_the_policys_hosts_and_requires_tls() -> None:
    found = under_policy(mx_destination(), "example.com", policy_of(StsMode.ENFORCE))
    assert found.hosts == [("192.0.2.1", 25)] and found.refusal is None
    assert found.tls_required and found.mta_sts is StsMode.ENFORCE


def test_enforce_without_a_matching_host_defers() -> None:
    policy = StsPolicy(StsMode.ENFORCE, ("*.other.test",), 60)
    found = under_policy(mx_destination(), "example.com", policy)
    assert found.hosts == [] and found.refusal is not None
    assert classify_reply(found.refusal) is MessageState.DEFERRED


@pytest.mark.parametrize("mode", [StsMode.TESTING, StsMode.NONE])
def test_testing_and_none_deliver_as_without_a_policy(mode: StsMode) -> None:
    found = under_policy(mx_destination(), "example.com", policy_of(mode))
    assert found.hosts == mx_destination().hosts
    assert found.mta_sts is mode and not found.tls_required


def test_no_policy_changes_nothing() -> None:
    assert under_policy(mx_destination(), "example.com", None) == mx_destination()
