"""Edge validation: addresses, sender domains, content, templates, schedule, attachments."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from libs.templates import Template
from schemas.send import SendRequest, TopicSendRequest
from services.ingest.validate import (
    MAX_ATTACHMENT_BYTES,
    Violation,
    as_problem,
    check_idempotency_key,
    check_request,
    parse_mailbox,
    parse_request,
    pointer,
    request_fingerprint,
    required_variables,
)

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
DOMAINS = ("example.test",)


def request(**fields: Any) -> SendRequest:
    body: dict[str, Any] = {
        "from": "Shop <noreply@example.test>",
        "to": ["user@example.org"],
        "subject": "Hi",
        "text": "Hello",
    }
    body.update(fields)
    return SendRequest.model_validate({k: v for k, v in body.items() if v is not None})


def template(subject: str = "Code", html: str | None = None, text: str | None = None) -> Template:
    return Template("t1", "otp", "en", 3, subject, html, text)


def codes(violations: list[Violation]) -> list[tuple[str, str]]:
    return [(v.code, v.pointer) for v in violations]


def refusal(raw: bytes, model: type[SendRequest] = SendRequest) -> list[tuple[str, str]]:
    parsed = parse_request(raw, model)
    assert isinstance(parsed, list), parsed
    return codes(parsed)


def test_a_plain_request_is_valid() -> None:
    assert check_request(request(), DOMAINS, None, NOW) == []


@pytest.mark.parametrize(
    "value",
    [
        "user@example.org",
        "User Name <user@example.org>",
        '"Doe, Jane" <jane@example.org>',
        "Zoë Ünïcødé 名前 <zoe@example.org>",
        f"{'Long Name ' * 40}<long@example.org>",
        "ü@exämple.org",
        "x@simulator.sendarix.test",
    ],
)
def test_addresses_that_are_accepted(value: str) -> None:
    mailbox = parse_mailbox(value)
    assert mailbox.address.endswith(mailbox.domain.split(".")[-1])


@pytest.mark.parametrize(
    "value",
    [
        "not-an-address",
        "foo bar@example.org",
        "Bob <>",
        "a@example.org, b@example.org",
        "Doe, Jane <jane@example.org>",
        "Bob <bob@example.org> trailing@example.org",
        "bob@example.org\r\nBcc: victim@example.org",
        "bob@localhost",
        f"{'x' * 65}@example.org",
    ],
)
def test_addresses_that_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        parse_mailbox(value)


def test_bad_addresses_are_pointed_at() -> None:
    bad = request(to=["ok@example.org", "nope", "Also Ok <b@example.org>"], reply_to="x")
    assert codes(check_request(bad, DOMAINS, None, NOW)) == [
        ("invalid_address", "/reply_to"),
        ("invalid_address", "/to/1"),
    ]


def test_duplicate_recipients_are_refused_whatever_their_spelling() -> None:
    dup = request(to=["a@example.org", "A <A@example.org>", "b@example.org"])
    assert codes(check_request(dup, DOMAINS, None, NOW)) == [("duplicate_recipient", "/to/1")]


@pytest.mark.parametrize(
    ("sender", "allowed"),
    [
        ("a@example.test", True),
        ("A@EXAMPLE.TEST", True),
        ("Mail <a@mail.example.test>", True),
        ("a@deep.mail.example.test", True),
        ("a@badexample.test", False),
        ("a@example.test.evil.org", False),
        ("a@other.test", False),
    ],
)
def test_the_sender_domain_must_be_the_tenants(sender: str, allowed: bool) -> None:
    found = codes(check_request(request(**{"from": sender}), DOMAINS, None, NOW))
    assert found == ([] if allowed else [("sender_not_allowed", "/from")])


def test_the_sender_check_comes_first() -> None:
    bad = request(**{"from": "a@other.test"}, to=["nope"], subject=None)
    assert check_request(bad, DOMAINS, None, NOW)[0].code == "sender_not_allowed"


def test_content_needs_a_subject_and_a_body_or_a_template() -> None:
    assert codes(check_request(request(subject=None), DOMAINS, None, NOW)) == [
        ("missing_content", "/subject")
    ]
    assert codes(check_request(request(text=None), DOMAINS, None, NOW)) == [
        ("missing_content", "/html")
    ]
    html_only = request(text=None, html="<p>Hi</p>")
    assert check_request(html_only, DOMAINS, None, NOW) == []


def test_an_unknown_template_is_refused() -> None:
    templated = request(subject=None, text=None, template="otp")
    assert codes(check_request(templated, DOMAINS, None, NOW)) == [
        ("unknown_template", "/template")
    ]


def test_template_data_must_cover_what_the_template_needs() -> None:
    found = template(
        subject="Your code {{ code }}",
        html="<p>{{ user.name }}, {{ greeting | default('Hi') }}</p>",
        text="{% for line in lines %}{{ line }}{% endfor %}{{ range(3) | list }}",
    )
    missing = request(subject=None, text=None, template="otp", data={"code": "123"})
    assert codes(check_request(missing, DOMAINS, found, NOW)) == [
        ("missing_template_data", "/data/lines"),
        ("missing_template_data", "/data/user"),
    ]
    complete = request(
        subject=None, text=None, template="otp", data={"code": 1, "user": {}, "lines": []}
    )
    assert check_request(complete, DOMAINS, found, NOW) == []


def test_variables_guarded_by_is_defined_are_optional() -> None:
    source = (
        "{% if coupon is defined %}{{ coupon }}{% endif %}"
        "{% if name is not defined %}friend{% else %}{{ name }}{% endif %}"
        "{% if x is defined %}{% else %}{{ x }}{% endif %}"
    )
    assert required_variables("s", source, None) == frozenset({"x"})


def test_a_template_that_does_not_parse_is_reported() -> None:
    broken = template(subject="{{ code ")
    templated = request(subject=None, text=None, template="otp")
    assert codes(check_request(templated, DOMAINS, broken, NOW)) == [
        ("invalid_template", "/template")
    ]


def test_send_at_may_be_at_most_72_hours_ahead() -> None:
    for ahead, ok in ((timedelta(hours=71), True), (timedelta(hours=73), False)):
        found = codes(check_request(request(send_at=(NOW + ahead).isoformat()), DOMAINS, None, NOW))
        assert found == ([] if ok else [("send_at_too_far", "/send_at")])
    past = request(send_at=(NOW - timedelta(days=1)).isoformat())
    assert check_request(past, DOMAINS, None, NOW) == []
    naive = request(send_at="2030-01-01T13:00:00")
    assert codes(check_request(naive, DOMAINS, None, NOW)) == [("invalid_request", "/send_at")]


def test_attachments_must_be_base64_and_not_too_large() -> None:
    good = base64.b64encode(b"%PDF-1.4").decode()
    attachments = [
        {"filename": "a.pdf", "content": good},
        {"filename": "b.pdf", "content": "not base64!"},
    ]
    assert codes(check_request(request(attachments=attachments), DOMAINS, None, NOW)) == [
        ("invalid_attachment", "/attachments/1/content")
    ]
    big = base64.b64encode(b"\0" * (MAX_ATTACHMENT_BYTES // 2 + 1)).decode()
    two_big = [{"filename": "a", "content": big}, {"filename": "b", "content": big}]
    assert codes(check_request(request(attachments=two_big), DOMAINS, None, NOW)) == [
        ("attachments_too_large", "/attachments")
    ]


def test_headers_must_not_be_structural_or_malformed() -> None:
    headers = {
        "X-Campaign": "spring",
        "List-Unsubscribe": "<https://example.test/u>",
        "Message-ID": "<forged@x>",
        "bcc": "spy@example.org",
        "Bad Name": "x",
        "X:Colon": "y",
        "X-Injected": "a\r\nBcc: spy@example.org",
    }
    assert codes(check_request(request(headers=headers), DOMAINS, None, NOW)) == [
        ("forbidden_header", "/headers/Message-ID"),
        ("forbidden_header", "/headers/bcc"),
        ("invalid_header", "/headers/Bad Name"),
        ("invalid_header", "/headers/X:Colon"),
        ("invalid_header", "/headers/X-Injected"),
    ]


def test_parse_reports_json_and_schema_errors_with_pointers() -> None:
    assert refusal(b"{nope") == [("malformed_json", "")]
    assert refusal(b"\xff\xfe") == [("malformed_json", "")]
    assert refusal(b"[1]") == [("invalid_request", "")]
    body = {
        "from": 7,
        "to": ["a@example.org", 5],
        "data": {"code": "1"},
        "metadata": {"k" * 65: "v"},
        "attachments": [{"filename": "a"}],
        "surprise": True,
    }
    found = parse_request(json.dumps(body).encode(), SendRequest)
    assert isinstance(found, list)
    assert sorted(v.pointer for v in found) == [
        "/attachments/0/content",
        "/from",
        f"/metadata/{'k' * 65}",
        "/surprise",
        "/to/1",
    ]
    assert {v.code for v in found} == {"invalid_request"}


def test_parse_gives_the_model_it_was_asked_for() -> None:
    body = {"from": "a@example.test", "to": "b@example.org", "tenant_id": "t", "text": "x"}
    parsed = parse_request(json.dumps(body).encode(), TopicSendRequest)
    assert isinstance(parsed, TopicSendRequest)
    assert parsed.to == ["b@example.org"]
    no_tenant = json.dumps({**body, "tenant_id": None}).encode()
    assert refusal(no_tenant, TopicSendRequest) == [("invalid_request", "/tenant_id")]


def test_pointers_escape_slash_and_tilde() -> None:
    assert pointer("data", "a/b~c", 0) == "/data/a~1b~0c/0"


def test_violations_become_one_problem() -> None:
    problem = as_problem(
        [Violation("invalid_address", "/to/0", "bad"), Violation("malformed_json", "", "x")]
    )
    assert problem.code == "invalid_address"
    assert problem.pointers == ("/to/0",)
    assert problem.detail == "/to/0: bad; /: x"


def test_the_fingerprint_ignores_spelling_but_not_content() -> None:
    one = SendRequest.model_validate_json(b'{"from":"a@example.test","to":"b@example.org"}')
    same = SendRequest.model_validate_json(
        b'{ "to": ["b@example.org"], "stream": "transactional", "from": "a@example.test" }'
    )
    other = SendRequest.model_validate_json(b'{"from":"a@example.test","to":"c@example.org"}')
    topic = TopicSendRequest.model_validate_json(
        b'{"from":"a@example.test","to":"b@example.org","tenant_id":"t","idempotency_key":"k"}'
    )
    assert request_fingerprint(one) == request_fingerprint(same) == request_fingerprint(topic)
    assert request_fingerprint(one) != request_fingerprint(other)


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("order-42", True),
        ("k" * 256, True),
        ("", False),
        ("k" * 257, False),
        ("é", False),
        ("tab\tbed", False),
    ],
)
def test_idempotency_keys(key: str, ok: bool) -> None:
    assert (check_idempotency_key(key) is None) is ok
