"""The records a sending domain publishes, the verdict on each DNS answer, the domain's status."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.dkim_keys import DkimKey
from libs.domain_records import (
    CheckStatus,
    DnsRecord,
    DomainStatus,
    RecordCheck,
    RecordKind,
    Unanswered,
    check_record,
    dkim_tags,
    dns_records,
    domain_status,
)
from libs.sending_domains import InvalidDomain, normalise_domain
from libs.settings import Settings

SETTINGS = Settings(
    spf_include="spf.sendarix.test",
    return_path_label="sx-bounces",
    bounce_host="bounces.sendarix.test",
)
KEY = DkimKey("sx202611-ab12", "unused", "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtest")


def records() -> dict[RecordKind, DnsRecord]:
    return {record.kind: record for record in dns_records("example.com", KEY, SETTINGS)}


def test_the_records_to_publish() -> None:
    found = records()
    assert found[RecordKind.DKIM] == DnsRecord(
        RecordKind.DKIM,
        "TXT",
        "sx202611-ab12._domainkey.example.com",
        f"v=DKIM1; k=rsa; p={KEY.public_key}",
    )
    assert found[RecordKind.SPF].name == "example.com"
    assert "include:spf.sendarix.test" in found[RecordKind.SPF].value.split()
    assert found[RecordKind.SPF].value.startswith("v=spf1 ")
    assert found[RecordKind.DMARC].name == "_dmarc.example.com"
    assert found[RecordKind.DMARC].value.startswith("v=DMARC1")
    assert found[RecordKind.RETURN_PATH] == DnsRecord(
        RecordKind.RETURN_PATH, "CNAME", "sx-bounces.example.com", "bounces.sendarix.test"
    )
    assert [r.required for r in found.values()] == [True, True, True, False]


def test_dkim_tags_ignore_white_space_inside_values() -> None:
    assert dkim_tags("v=DKIM1; k=rsa;\n p=MIIB IjAN ") == {
        "v": "DKIM1",
        "k": "rsa",
        "p": "MIIBIjAN",
    }


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        ((f"v=DKIM1; k=rsa; p={KEY.public_key}",), CheckStatus.PASS),
        ((f"v=DKIM1; p={KEY.public_key[:20]} {KEY.public_key[20:]}",), CheckStatus.PASS),
        (("v=DKIM1; k=rsa; p=SOMEOTHERKEY",), CheckStatus.WRONG_VALUE),
        (("v=DKIM1; k=rsa; p=",), CheckStatus.MISSING),  # p= empty: a revoked key
        ((), CheckStatus.MISSING),
        (Unanswered("DNS timed out"), CheckStatus.UNCHECKED),
    ],
)
def test_dkim_check(answer: tuple[str, ...] | Unanswered, status: CheckStatus) -> None:
    assert check_record(records()[RecordKind.DKIM], answer).status is status


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (("v=spf1 include:spf.sendarix.test ~all",), CheckStatus.PASS),
        (
            ("google-site-verification=x", "v=spf1 mx INCLUDE:spf.sendarix.test -all"),
            CheckStatus.PASS,
        ),
        (("v=spf1 include:_spf.google.com ~all",), CheckStatus.WRONG_VALUE),
        (("v=spf1 include:spf.sendarix.test ~all", "v=spf1 -all"), CheckStatus.WRONG_VALUE),
        (("google-site-verification=x",), CheckStatus.MISSING),
        (Unanswered("no nameserver answered"), CheckStatus.UNCHECKED),
    ],
)
def test_spf_check(answer: tuple[str, ...] | Unanswered, status: CheckStatus) -> None:
    assert check_record(records()[RecordKind.SPF], answer).status is status


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (("bounces.sendarix.test",), CheckStatus.PASS),
        (("Bounces.Sendarix.Test.",), CheckStatus.PASS),
        (("elsewhere.example.net",), CheckStatus.WRONG_VALUE),
        ((), CheckStatus.MISSING),
    ],
)
def test_return_path_check(answer: tuple[str, ...], status: CheckStatus) -> None:
    check = check_record(records()[RecordKind.RETURN_PATH], answer)
    assert check.status is status
    assert check.found == answer


def test_dmarc_check() -> None:
    dmarc = records()[RecordKind.DMARC]
    assert check_record(dmarc, ("v=DMARC1; p=reject",)).status is CheckStatus.PASS
    assert check_record(dmarc, ("v=spf1 -all",)).status is CheckStatus.MISSING


def test_a_wrong_value_says_what_was_found() -> None:
    check = check_record(records()[RecordKind.RETURN_PATH], ("elsewhere.example.net",))
    assert "elsewhere.example.net" in check.reason
    assert RecordCheck.from_json(check.as_json()) == check


RESULTS = {
    "p": CheckStatus.PASS,
    "m": CheckStatus.MISSING,
    "w": CheckStatus.WRONG_VALUE,
    "u": CheckStatus.UNCHECKED,
}
ORDER = (RecordKind.DKIM, RecordKind.SPF, RecordKind.RETURN_PATH, RecordKind.DMARC)


def checks(results: str) -> list[RecordCheck]:
    """Checks of DKIM, SPF, return path and DMARC, one letter each (pass, missing, wrong,
    unchecked)."""
    return [
        RecordCheck(kind, RESULTS[letter], "") for kind, letter in zip(ORDER, results, strict=True)
    ]


@pytest.mark.parametrize(
    ("previous", "results", "status"),
    [
        # the required records all found: verified, DMARC or not
        ("pending", "pppm", "verified"),
        ("failed", "pppp", "verified"),
        # one required record missing or wrong: never verified stays pending, verified fails
        ("pending", "pmpp", "pending"),
        ("verified", "wppp", "failed"),
        ("failed", "ppmp", "failed"),
        # DNS could not answer: nothing changes
        ("verified", "uppp", "verified"),
        ("pending", "uuuu", "pending"),
        ("failed", "pupp", "failed"),
        # ...unless something failed for certain
        ("verified", "umpp", "failed"),
    ],
)
def test_domain_status(previous: str, results: str, status: str) -> None:
    assert domain_status(DomainStatus(previous), checks(results)) is DomainStatus(status)


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("Example.COM", "example.com"),
        (" mail.example.com. ", "mail.example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("ÉCOLE.fr", "xn--cole-9oa.fr"),
    ],
)
def test_domains_are_stored_lower_case_in_punycode(text: str, normalised: str) -> None:
    assert normalise_domain(text) == normalised


@pytest.mark.parametrize(
    "text",
    ["", "   ", "localhost", "exa mple.com", "-bad.example.com", "a..b.com", "user@example.com",
     "192.168.0.1", "x" * 64 + ".com", ("a" * 60 + ".") * 5 + "com", "example.com/path"],
)  # fmt: skip
def test_junk_is_not_a_domain(text: str) -> None:
    with pytest.raises(InvalidDomain):
        normalise_domain(text)


@given(st.text(max_size=300))
def test_any_text_is_a_normalised_domain_or_refused(text: str) -> None:
    try:
        domain = normalise_domain(text)
    except InvalidDomain:
        return
    assert domain.isascii() and domain == domain.lower() and "." in domain
    assert normalise_domain(domain) == domain
