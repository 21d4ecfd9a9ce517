"""Edge validation of send requests, shared by the HTTP gateway and the topic intake.

Every check is a pure function over schema objects that returns ``Violation`` values, one per
bad field, each naming its field with a JSON pointer (RFC 6901) into the request body. Nothing
here does I/O: whatever a check needs from the database (the tenant, the template) is passed in.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import getaddresses
from functools import lru_cache
from typing import TypeVar

from email_validator import EmailNotValidError, validate_email
from jinja2 import TemplateSyntaxError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment
from pydantic import ValidationError

from libs.templates import Template
from schemas.common import Problem
from schemas.send import STRUCTURAL_HEADERS, SendRequest

RequestT = TypeVar("RequestT", bound=SendRequest)

MAX_SCHEDULE_AHEAD = timedelta(hours=72)
MAX_ATTACHMENT_BYTES = 7 * 1024 * 1024
"""Decoded attachment bytes per message: fits a 10 MiB body once base64-encoded."""
MAX_IDEMPOTENCY_KEY_CHARS = 256


_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 field name: printable ASCII but ':'
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DEFAULT_FILTERS = frozenset({"default", "d"})
_DEFINED_TESTS = frozenset({"defined", "undefined"})
_JINJA = SandboxedEnvironment()


@dataclass(frozen=True)
class Violation:
    """One reason to refuse a request: a code, the field's JSON pointer and a sentence."""

    code: str
    pointer: str
    detail: str


@dataclass(frozen=True)
class Mailbox:
    """An address as written ("Name <addr>" or "addr") and its validated parts."""

    name: str
    address: str
    domain: str


def pointer(*parts: str | int) -> str:
    """The JSON pointer of a field (``pointer("to", 0)`` → ``/to/0``)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def as_problem(violations: Sequence[Violation]) -> Problem:
    """The violations as the one ``Problem`` a rejected event or dead letter carries."""
    detail = "; ".join(f"{v.pointer or '/'}: {v.detail}" for v in violations)
    return Problem(
        code=violations[0].code,
        detail=detail,
        pointers=tuple(v.pointer for v in violations if v.pointer),
    )


def parse_request(raw: bytes, model: type[RequestT]) -> RequestT | list[Violation]:
    """The request in ``raw`` (UTF-8 JSON), or why it is not one."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as error:
        return [Violation("malformed_json", "", f"the body is not UTF-8 JSON: {error}")]
    if not isinstance(body, dict):
        return [Violation("invalid_request", "", "the body must be a JSON object")]
    try:
        return model.model_validate(body)
    except ValidationError as error:
        return [
            Violation(
                "invalid_request",
                pointer(*(part for part in issue["loc"] if part != "[key]")),
                issue["msg"],
            )
            for issue in error.errors(include_url=False)
        ]


def request_fingerprint(request: SendRequest) -> str:
    """sha256 of the request's canonical JSON: equal for the same request, however written."""
    fields = request.model_dump(mode="json", by_alias=True, include=set(SendRequest.model_fields))
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_idempotency_key(key: str) -> str | None:
    """Why ``key`` cannot be an idempotency key, or None when it can."""
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        return f"the Idempotency-Key must have 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"
    if not key.isascii() or _CONTROL.search(key):
        return "the Idempotency-Key must be printable ASCII"
    return None


def parse_mailbox(value: str) -> Mailbox:
    """One mailbox, "Name <addr>" or "addr"; raises ValueError saying what is wrong with it."""
    if _CONTROL.search(value):
        raise ValueError("control characters are not allowed in an address")
    found = getaddresses([value])
    if len(found) != 1 or not found[0][1]:
        raise ValueError("expected one address, as addr@domain or Name <addr@domain>")
    name, address = found[0]
    try:
        valid = validate_email(
            address, check_deliverability=False, test_environment=True, strict=True
        )
    except EmailNotValidError as error:
        raise ValueError(str(error)) from error
    return Mailbox(name=name, address=valid.normalized, domain=valid.ascii_domain.lower())


def sender_allowed(domain: str, tenant_domains: Sequence[str]) -> bool:
    """True when ``domain`` is one of the tenant's domains or a subdomain of one."""
    return any(domain == d or domain.endswith("." + d) for d in tenant_domains)


@lru_cache(maxsize=512)
def required_variables(subject: str, html: str | None, text: str | None) -> frozenset[str]:
    """The variables a template reads without a default; raises TemplateSyntaxError."""
    required: set[str] = set()
    for source in (subject, html, text):
        if source is None:
            continue
        tree = _JINJA.parse(source)
        undeclared = meta.find_undeclared_variables(tree) - set(_JINJA.globals)
        required |= undeclared & set(_unguarded_names(tree))
    return frozenset(required)


def _unguarded_names(node: nodes.Node, shielded: frozenset[str] = frozenset()) -> Iterator[str]:
    """Names read where a missing value fails the render.

    ``x | default(...)``, ``x is defined`` and the branch of ``{% if x is defined %}`` that runs
    only when ``x`` exists all tolerate a missing ``x``.
    """
    if isinstance(node, nodes.Name) and node.ctx == "load" and node.name not in shielded:
        yield node.name
    if isinstance(node, nodes.If):
        when_true, when_false = _defined_by(node.test)
        yield from _unguarded_names(node.test, shielded)
        for child in node.body:
            yield from _unguarded_names(child, shielded | when_true)
        for child in (*node.elif_, *node.else_):
            yield from _unguarded_names(child, shielded | when_false)
        return
    for child in node.iter_child_nodes():
        if not _tolerates_absence(node, child):
            yield from _unguarded_names(child, shielded)


def _tolerates_absence(parent: nodes.Node, child: nodes.Node) -> bool:
    return (
        isinstance(child, nodes.Name)
        and child is getattr(parent, "node", None)
        and (
            (isinstance(parent, nodes.Filter) and parent.name in _DEFAULT_FILTERS)
            or (isinstance(parent, nodes.Test) and parent.name in _DEFINED_TESTS)
        )
    )


def _defined_by(test: nodes.Node) -> tuple[frozenset[str], frozenset[str]]:
    """The names an ``if`` test proves defined when it is true, and when it is false."""
    if isinstance(test, nodes.Not):
        when_true, when_false = _defined_by(test.node)
        return when_false, when_true
    if isinstance(test, nodes.Test) and isinstance(test.node, nodes.Name):
        name = frozenset({test.node.name})
        if test.name == "defined":
            return name, frozenset()
        if test.name == "undefined":
            return frozenset(), name
    return frozenset(), frozenset()


def check_request(
    request: SendRequest,
    tenant_domains: Sequence[str],
    template: Template | None,
    now: datetime,
) -> list[Violation]:
    """Everything wrong with a schema-valid request; ``template`` is its template, if found.

    The sender check comes first: when it fails, the answer is 403 whatever else is wrong.
    """
    return [
        *_sender(request, tenant_domains),
        *_recipients(request),
        *_content(request, template),
        *_schedule(request, now),
        *_attachments(request),
        *_headers(request),
    ]


def _sender(request: SendRequest, tenant_domains: Sequence[str]) -> Iterator[Violation]:
    try:
        sender = parse_mailbox(request.sender)
    except ValueError as error:
        yield Violation("invalid_address", pointer("from"), str(error))
    else:
        if not sender_allowed(sender.domain, tenant_domains):
            yield Violation(
                "sender_not_allowed",
                pointer("from"),
                f"{sender.domain} is not one of this tenant's sending domains",
            )
    if request.reply_to is not None:
        try:
            parse_mailbox(request.reply_to)
        except ValueError as error:
            yield Violation("invalid_address", pointer("reply_to"), str(error))


def _recipients(request: SendRequest) -> Iterator[Violation]:
    seen: set[str] = set()
    for index, value in enumerate(request.to):
        try:
            recipient = parse_mailbox(value)
        except ValueError as error:
            yield Violation("invalid_address", pointer("to", index), str(error))
            continue
        address = recipient.address.lower()
        if address in seen:
            yield Violation(
                "duplicate_recipient", pointer("to", index), f"{address} is listed twice"
            )
        seen.add(address)


def _content(request: SendRequest, template: Template | None) -> Iterator[Violation]:
    if request.template is None:
        if not request.subject:
            yield Violation("missing_content", pointer("subject"), "a subject or a template")
        if not request.html and not request.text:
            yield Violation("missing_content", pointer("html"), "html or text, or a template")
        return
    if template is None:
        yield Violation(
            "unknown_template", pointer("template"), f"no template named {request.template!r}"
        )
        return
    try:
        needed = required_variables(template.subject, template.html, template.text)
    except TemplateSyntaxError as error:
        yield Violation(
            "invalid_template",
            pointer("template"),
            f"template {template.name!r} v{template.version} does not parse: {error}",
        )
        return
    for name in sorted(needed - request.data.keys()):
        yield Violation(
            "missing_template_data",
            pointer("data", name),
            f"template {template.name!r} needs {name!r}",
        )


def _schedule(request: SendRequest, now: datetime) -> Iterator[Violation]:
    if request.send_at is None:
        return
    if request.send_at.tzinfo is None:
        yield Violation("invalid_request", pointer("send_at"), "send_at needs a UTC offset")
    elif request.send_at - now > MAX_SCHEDULE_AHEAD:
        yield Violation(
            "send_at_too_far",
            pointer("send_at"),
            f"send_at is at most {MAX_SCHEDULE_AHEAD.total_seconds() / 3600:.0f} h ahead",
        )


def _attachments(request: SendRequest) -> Iterator[Violation]:
    total = 0
    for index, attachment in enumerate(request.attachments):
        try:
            total += len(binascii.a2b_base64(attachment.content, strict_mode=True))
        except binascii.Error:
            yield Violation(
                "invalid_attachment",
                pointer("attachments", index, "content"),
                "content must be base64",
            )
    if total > MAX_ATTACHMENT_BYTES:
        yield Violation(
            "attachments_too_large",
            pointer("attachments"),
            f"attachments total {total} bytes, at most {MAX_ATTACHMENT_BYTES}",
        )


def _headers(request: SendRequest) -> Iterator[Violation]:
    for name, value in request.headers.items():
        where = pointer("headers", name)
        if not _HEADER_NAME.match(name):
            yield Violation("invalid_header", where, "not a valid header name")
        elif name.lower() in STRUCTURAL_HEADERS:
            yield Violation("forbidden_header", where, f"{name} is set by Sendarix")
        elif _CONTROL.search(value.replace("\t", " ")):
            yield Violation("invalid_header", where, "header values are one line of text")
