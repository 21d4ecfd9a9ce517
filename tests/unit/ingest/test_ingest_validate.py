"""Edge validation: JSON, text, addresses, sender domains, content, templates, schedule, files."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

from libs.sendable import MAX_ATTACHMENT_BYTES, MAX_MESSAGE_BYTES, MAX_NESTING
from libs.template_engine import required_variables
from libs.templates import LocaleContent, TemplateVersion
from schemas.common import Mailbox
from schemas.send import SendRequest, TopicSendRequest
from services.ingest.validate import (
    Addresses,
    Violation,
    as_problem,
    check_idempotency_key,
    check_request,
    parse_body,
    parse_request,
    pointer,
    request_fingerprint,
)

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
DOMAINS = ("example.test",)


def body(**fields: Any) -> dict[str, Any]:
    """A valid request body; ``fields`` override (None: leave the field out)."""
    values: dict[str, Any] = {
        "from": "Shop <noreply@example.test>",
        "to": ["user@example.org"],
        "subject": "Hi",
        "text": "Hello",
    }
    return {k: v for k, v in (values | fields).items() if v is not None}


def request(**fields: Any) -> SendRequest:
    return SendRequest.model_validate(body(**fields))


def raw(**fields: Any) -> bytes:
    return json.dumps(body(**fields)).encode()


def file(**fields: str) -> dict[str, str]:
    """An attachment of a request body; ``fields`` override."""
    return {"filename": "a.pdf", "content": "QQ=="} | fields


def template(
    subject: str = "Code", html: str | None = None, text: str | None = None
) -> TemplateVersion:
    content = LocaleContent(subject=subject, html=html, text=text if html or text else "")
    return TemplateVersion(tenant_id="t1", alias="otp", version=3, contents={"en": content})


def codes(checked: Addresses | SendRequest | list[Violation]) -> list[tuple[str, str]]:
    """The code and pointer of each violation; none when the request is acceptable."""
    return [(v.code, v.pointer) for v in checked] if isinstance(checked, list) else []


def refusal(data: bytes, model: type[SendRequest] = SendRequest) -> list[tuple[str, str]]:
    found = parse_request(data, model)
    assert isinstance(found, list), found
    return codes(found)


def accepted(data: bytes) -> Addresses:
    """The addresses of a request that passes the whole edge."""
    found = parse_request(data, SendRequest)
    assert isinstance(found, SendRequest), found
    checked = check_request(found, DOMAINS, None, NOW)
    assert isinstance(checked, Addresses), checked
    return checked


def test_a_plain_request_gives_its_parsed_addresses() -> None:
    assert check_request(request(reply_to="help@example.test"), DOMAINS, None, NOW) == Addresses(
        sender=Mailbox(address="noreply@example.test", name="Shop"),
        reply_to=Mailbox(address="help@example.test"),
        recipients=(Mailbox(address="user@example.org"),),
    )


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
    assert codes(check_request(bad, DOMAINS, None, NOW))[0] == ("sender_not_allowed", "/from")


def test_content_needs_a_subject_and_a_body_or_a_template() -> None:
    assert codes(check_request(request(subject=None), DOMAINS, None, NOW)) == [
        ("missing_content", "/subject")
    ]
    assert codes(check_request(request(text=None), DOMAINS, None, NOW)) == [
        ("missing_content", "/html")
    ]
    html_only = request(text=None, html="<p>Hi</p>")
    assert codes(check_request(html_only, DOMAINS, None, NOW)) == []


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
    assert codes(check_request(complete, DOMAINS, found, NOW)) == []


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
    assert codes(check_request(past, DOMAINS, None, NOW)) == []
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


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"subject": "a\u0000b"}, "/subject"),
        ({"subject": "a\r\nBcc: spy@example.org"}, "/subject"),
        ({"from": "Rev\u2028Team <login@example.test>"}, "/from"),
        ({"from": "Rev\u0085Team <login@example.test>"}, "/from"),
        ({"reply_to": "Help\u0085Desk <help@example.test>"}, "/reply_to"),
        ({"to": ["ok@example.org", "Bob\u2029 <b@example.org>"]}, "/to/1"),
        ({"headers": {"X-Foo": "a\u0085b"}}, "/headers/X-Foo"),
        ({"headers": {"X-Foo": "a\u2028b"}}, "/headers/X-Foo"),
        ({"headers": {"X-Foo": "a\rb"}}, "/headers/X-Foo"),
        ({"headers": {"X-\u0000": "v"}}, "/headers/X-\u0000"),
        ({"attachments": [file(filename="a\r\nb.pdf")]}, "/attachments/0/filename"),
        ({"attachments": [file(content_type="a/b\n")]}, "/attachments/0/content_type"),
        ({"tags": ["ok", "bad\u0000"]}, "/tags/1"),
        ({"metadata": {"order": "42\u009b"}}, "/metadata/order"),
        ({"html": "<p>a\u0000b</p>"}, "/html"),
        ({"text": "lone \ud800 surrogate"}, "/text"),
        ({"data": {"name": "Zo\u0000ë"}}, "/data/name"),
        ({"data": {"list": [{"deep": "\udfff"}]}}, "/data/list/0/deep"),
        ({"data": {"k\u0000": 1}}, "/data/k\u0000"),
        ({"surprise": "\u0000"}, "/surprise"),
    ],
)  # fmt: skip
def test_text_that_could_break_a_header_or_the_database_is_pointed_at(
    fields: dict[str, Any], where: str
) -> None:
    assert refusal(raw(**fields)) == [("invalid_text", where)]


def test_bodies_and_data_keep_line_breaks_tabs_and_any_printable_text() -> None:
    text = "Line one\r\nline two\n\tindented \u2028 \x85 \x0c ✓ 名前"
    data = {"name": 'Zoë\n"quoted"\t', "nested": {"list": ["\r\n", 1, None]}}
    found = parse_request(raw(text=text, html=f"<p>{text}</p>", data=data), SendRequest)
    assert isinstance(found, SendRequest)
    assert (found.text, found.data) == (text, data)


def test_a_tab_may_be_in_a_header_value_or_subject_only() -> None:
    assert isinstance(
        parse_request(raw(subject="a\tb", headers={"X-T": "a\tb"}), SendRequest), SendRequest
    )
    assert refusal(raw(tags=["a\tb"])) == [("invalid_text", "/tags/0")]


def test_a_lone_surrogate_in_a_key_is_pointed_at_in_encodable_text() -> None:
    found = refusal(raw(data={"a\ud800": "v"}))
    assert found == [("invalid_text", "/data/a\ufffd")]
    found[0][1].encode()


def test_text_faults_are_counted_not_listed_without_end() -> None:
    found = refusal(raw(data={str(n): "\u0000" for n in range(10_000)}))
    assert 0 < len(found) <= 20


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 1_000, 50_000])
def test_deep_json_is_refused_without_recursing(depth: int) -> None:
    nested = "[" * depth + "]" * depth
    data = b'{"from":"a@example.test","to":"b@example.org","data":{"x":' + nested.encode() + b"}}"
    [(code, _)] = refusal(data)
    assert code == "too_deep"


def test_nesting_up_to_the_limit_is_fine_and_the_first_too_deep_value_is_named() -> None:
    def nested(levels: int) -> Any:  # objects below the request's own
        value: Any = "leaf"
        for _ in range(levels):
            value = {"x": value}
        return value

    assert isinstance(parse_request(raw(data=nested(MAX_NESTING - 1)), SendRequest), SendRequest)
    too_deep = "/data" + "/x" * (MAX_NESTING - 1)
    assert refusal(raw(data=nested(MAX_NESTING))) == [("too_deep", too_deep)]


@pytest.mark.parametrize(
    "data",
    [
        b"\xc3\x28",  # not UTF-8
        b"\xed\xa0\x80",  # an encoded surrogate is not UTF-8 either
        b'{"a": NaN}',
        b'{"a": -Infinity}',
        b"\xef\xbb\xbf{}",  # a byte-order mark
        b'{"n": 1' + b"0" * 5000 + b"}",  # more digits than Python converts
    ],
)
def test_what_is_not_utf8_json_is_malformed(data: bytes) -> None:
    assert refusal(data) == [("malformed_json", "")]


def test_a_body_larger_than_a_message_is_refused_before_parsing() -> None:
    assert refusal(b" " * (MAX_MESSAGE_BYTES + 1)) == [("payload_too_large", "")]


@given(st.binary(max_size=200))
def test_parse_request_never_raises_on_bytes(data: bytes) -> None:
    parse_request(data, SendRequest)


TRICKY = ["\x00", "\t", "\r\n", "\x85", "\u2028", "\ud800", "\udfff", "=?", "<", "@", "é"]
TEXT = st.lists(st.characters() | st.sampled_from(TRICKY), max_size=12).map("".join)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
FIELDS = ["from", "to", "reply_to", "subject", "html", "text", "data", "headers", "tags"]
FIELDS += ["metadata", "attachments", "template", "locale", "send_at", "category", "stream"]


@given(st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6))
def test_the_edge_never_raises_and_its_refusals_encode(fields: dict[str, Any]) -> None:
    parsed = parse_request(json.dumps(body(**fields)).encode(), SendRequest)
    checked = parsed if isinstance(parsed, list) else check_request(parsed, DOMAINS, None, NOW)
    if isinstance(checked, list):
        assert checked
        answer = [(v.code, v.pointer, v.detail) for v in checked]
        json.dumps(answer, ensure_ascii=False).encode()  # the HTTP answer and DLQ headers


def test_attachment_content_with_non_ascii_is_invalid_not_an_error() -> None:
    found = parse_request(
        raw(attachments=[{"filename": "a.pdf", "content": "QUJD€="}]), SendRequest
    )
    assert isinstance(found, SendRequest)
    assert codes(check_request(found, DOMAINS, None, NOW)) == [
        ("invalid_attachment", "/attachments/0/content")
    ]


def test_a_header_name_longer_than_76_characters_is_invalid() -> None:
    name = "X-" + "a" * 98
    found = parse_request(raw(headers={name: "v"}), SendRequest)
    assert isinstance(found, SendRequest)
    assert codes(check_request(found, DOMAINS, None, NOW)) == [
        ("invalid_header", f"/headers/{name}")
    ]


def test_accented_names_and_idn_domains_pass_in_their_sendable_form() -> None:
    addresses = accepted(raw(to=["Ana María <ana.maria@example.com>", "user@bücher.de"]))
    assert addresses.recipients == (
        Mailbox(address="ana.maria@example.com", name="Ana María"),
        Mailbox(address="user@xn--bcher-kva.de"),
    )


def test_a_utf8_local_part_is_refused_at_the_edge() -> None:
    found = parse_request(raw(to=["ok@example.org", "josé@example.com"]), SendRequest)
    assert isinstance(found, SendRequest)
    assert codes(check_request(found, DOMAINS, None, NOW)) == [("smtputf8_unsupported", "/to/1")]


def test_a_display_name_that_is_an_encoded_word_is_refused() -> None:
    spoof = "=?utf-8?q?ceo=40bank.example?= <login@example.test>"
    for fields, where in (
        ({"from": spoof}, "/from"),
        ({"reply_to": spoof}, "/reply_to"),
        ({"to": [spoof]}, "/to/0"),
    ):
        found = parse_request(raw(**fields), SendRequest)
        assert isinstance(found, SendRequest)
        assert codes(check_request(found, DOMAINS, None, NOW)) == [("invalid_address", where)]


def test_duplicates_are_found_on_the_sendable_address() -> None:
    found = parse_request(raw(to=["user@bücher.de", "U <user@XN--BCHER-KVA.DE>"]), SendRequest)
    assert isinstance(found, SendRequest)
    assert codes(check_request(found, DOMAINS, None, NOW)) == [("duplicate_recipient", "/to/1")]


def test_a_request_inside_a_batch_is_pointed_at_below_its_place() -> None:
    at = pointer("messages", 3)
    assert codes(parse_body(body(subject="a\u0000b"), SendRequest, at)) == [
        ("invalid_text", "/messages/3/subject")
    ]
    assert codes(parse_body(body(to=[5]), SendRequest, at)) == [
        ("invalid_request", "/messages/3/to/0")
    ]
    assert codes(parse_body("nope", SendRequest, at)) == [("invalid_request", "/messages/3")]
    assert isinstance(parse_body(body(), SendRequest, at), SendRequest)


class AnyFields(BaseModel):
    """A resource body whose fields are whatever the test sends."""

    model_config = ConfigDict(extra="allow")


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"description": "a\\u0000b"}', "/description"),
        (b'{"match": {"metadata": {"k": "\\ud800"}}}', "/match/metadata/k"),
        (b'{"list": ["ok", "\\u0000"]}', "/list/1"),
        (b'{"k\\u0000": "v"}', "/k\x00"),
    ],
)
def test_a_resource_body_with_text_postgresql_cannot_store_is_refused(
    body: bytes, where: str
) -> None:
    refused = parse_request(body, AnyFields, stored_as_is=True)
    assert isinstance(refused, list)
    assert [(v.code, v.pointer) for v in refused] == [("invalid_text", where)]


def test_a_resource_body_of_ordinary_text_is_parsed() -> None:
    parsed = parse_request(b'{"description": "caf\\u00e9"}', AnyFields, stored_as_is=True)
    assert not isinstance(parsed, list)
