"""Edge validation of send requests, shared by the HTTP gateway and the topic intake.

Every check is a pure function that returns ``Violation`` values, one per bad field, each
naming its field with a JSON pointer (RFC 6901) into the request body — never an exception, so
no input answers 500 or stalls a partition. What is sendable is defined once, in
``libs.sendable``; an acceptable request yields its parsed ``Addresses``, from which every
header is later written. Nothing here does I/O: whatever a check needs from the database (the
tenant, the template) is passed in.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ValidationError

from libs.sendable import (
    BODY,
    HEADER_VALUE,
    MAX_ATTACHMENT_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_NESTING,
    ONE_LINE,
    TextRule,
    UnsendableAddress,
    domain_of,
    header_fault,
    parse_mailbox,
)
from libs.template_engine import check_data
from libs.templates import TemplateVersion
from schemas.common import Mailbox, Problem
from schemas.send import SendRequest

ModelT = TypeVar("ModelT", bound=BaseModel)
JsonPath = tuple[str | int, ...]
"""Where a value is in a JSON document: its keys and indexes from the top."""

MAX_SCHEDULE_AHEAD = timedelta(hours=72)
MAX_IDEMPOTENCY_KEY_CHARS = 256
MAX_TEXT_VIOLATIONS = 20
"""Text faults reported per request: enough to fix it, few enough that no body can make the
answer huge."""

_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
_BODY_FIELDS = frozenset({"html", "text", "data"})
_HEADER_VALUE_FIELDS = frozenset({"subject", "headers"})
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
class Addresses:
    """The parsed addresses of an acceptable request: what every message is built from."""

    sender: Mailbox
    reply_to: Mailbox | None
    recipients: tuple[Mailbox, ...]


def pointer(*parts: str | int) -> str:
    """The JSON pointer of a field (``pointer("to", 0)`` → ``/to/0``).

    A lone surrogate in a key becomes U+FFFD: pointers go into UTF-8 answers and headers.
    """
    escaped = "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)
    return _LONE_SURROGATE.sub("\ufffd", escaped)


def as_problem(violations: Sequence[Violation]) -> Problem:
    """The violations as the one ``Problem`` a rejected event or dead letter carries."""
    detail = "; ".join(f"{v.pointer or '/'}: {v.detail}" for v in violations)
    return Problem(
        code=violations[0].code,
        detail=detail,
        pointers=tuple(v.pointer for v in violations if v.pointer),
    )


def parse_request(
    raw: bytes, model: type[ModelT], stored_as_is: bool = False
) -> ModelT | list[Violation]:
    """The request in ``raw`` (UTF-8 JSON), or why it is not one; never raises.

    ``stored_as_is``: the body's strings go to the database unchanged (a resource, not a
    message), so one PostgreSQL text cannot hold — NUL, a lone surrogate — is refused.
    """
    if len(raw) > MAX_MESSAGE_BYTES:
        return [Violation("payload_too_large", "", f"at most {MAX_MESSAGE_BYTES} bytes")]
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError:
        return [_too_deep("")]
    except ValueError as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return [Violation("malformed_json", "", f"the body is not UTF-8 JSON: {error}")]
    if stored_as_is and (unstorable := _unstorable_text(body, ())):
        return unstorable
    return parse_body(body, model)


def _unstorable_text(value: object, at: tuple[str | int, ...]) -> list[Violation]:
    """A violation for each string (key or value) in decoded JSON that PostgreSQL cannot store."""
    if isinstance(value, str):
        if "\x00" in value or _LONE_SURROGATE.search(value):
            return [
                Violation("invalid_text", pointer(*at), "NUL and lone surrogates cannot be stored")
            ]
        return []
    items: Iterable[tuple[str | int, object]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return []
    found: list[Violation] = []
    for key, item in items:
        found += _unstorable_text(key, (*at, key)) if isinstance(key, str) else []
        found += _unstorable_text(item, (*at, key))
    return found


def parse_body(body: object, model: type[ModelT], at: str = "") -> ModelT | list[Violation]:
    """Decoded JSON as ``model``, or why it is not one; pointers start at ``at``.

    A send request's nesting and text are checked on the JSON itself, before the schema, so no
    field can carry a character that would break a header, the database or the encoder further
    down. Any other model (a batch) is checked by its schema only: each send request in it is
    then parsed on its own.
    """
    if not isinstance(body, dict):
        return [Violation("invalid_request", at, "the body must be a JSON object")]
    if issubclass(model, SendRequest) and (faults := _json_faults(body, at)):
        return faults
    try:
        return model.model_validate(body)
    except ValidationError as error:
        return [
            Violation(
                "invalid_request",
                at + pointer(*(part for part in issue["loc"] if part != "[key]")),
                issue["msg"],
            )
            for issue in error.errors(include_url=False)
        ]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _too_deep(where: str) -> Violation:
    return Violation("too_deep", where, f"JSON may nest at most {MAX_NESTING} levels")


def _json_faults(body: dict[str, Any], at: str) -> list[Violation]:
    """Too deep a nesting, or text a field may not carry; walked without recursion."""
    found: list[Violation] = []
    stack: list[tuple[JsonPath, Any, bool]] = [((), body, False)]
    while stack and len(found) < MAX_TEXT_VIOLATIONS:
        path, value, is_key = stack.pop()
        if isinstance(value, str):
            if fault := _text_rule(path, is_key).fault(value):
                found.append(Violation("invalid_text", at + pointer(*path), fault))
        elif isinstance(value, dict | list):
            if len(path) >= MAX_NESTING:
                return [_too_deep(at + pointer(*path))]
            members = value.items() if isinstance(value, dict) else enumerate(value)
            children: list[tuple[JsonPath, Any, bool]] = []
            for key, child in members:
                if isinstance(key, str):
                    children.append(((*path, key), key, True))
                children.append(((*path, key), child, False))
            stack.extend(reversed(children))
    return found


def _text_rule(path: JsonPath, is_key: bool) -> TextRule:
    """The rule for a string at ``path``: body text, a header value, or one line of text.

    The request field the string is in decides; a key of the request itself names a field.
    """
    field = path[0] if len(path) > 1 or not is_key else None
    if field in _BODY_FIELDS:
        return BODY
    if field in _HEADER_VALUE_FIELDS and not is_key:
        return HEADER_VALUE
    return ONE_LINE


def request_fingerprint(request: SendRequest) -> str:
    """sha256 of the request's canonical JSON: equal for the same request, however written."""
    fields = request.model_dump(mode="json", by_alias=True, include=set(SendRequest.model_fields))
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_idempotency_key(key: str) -> str | None:
    """Why ``key`` cannot be an idempotency key, or None when it can."""
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        return f"the Idempotency-Key must have 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"
    if not (key.isascii() and key.isprintable()):
        return "the Idempotency-Key must be printable ASCII"
    return None


def sender_allowed(domain: str, tenant_domains: Sequence[str]) -> bool:
    """True when ``domain`` is one of the tenant's domains or a subdomain of one."""
    return any(domain == d or domain.endswith("." + d) for d in tenant_domains)


def check_request(
    request: SendRequest,
    tenant_domains: Sequence[str],
    template: TemplateVersion | None,
    now: datetime,
    sendable_domains: Sequence[str] | None = None,
) -> Addresses | list[Violation]:
    """The parsed addresses of a request from ``parse_request``, or everything wrong with it.

    ``template`` is the request's template, if found. ``sendable_domains`` are those of
    ``tenant_domains`` mail may go from now (``Tenant.sendable_domains``; None: all of them).
    The sender check comes first: when it fails, the answer is 403 (a domain not the
    tenant's) or 422 (one not verified) whatever else is wrong.
    """
    sender = _mailbox(request.sender, pointer("from"))
    reply_to = None if request.reply_to is None else _mailbox(request.reply_to, pointer("reply_to"))
    recipients = [_mailbox(value, pointer("to", index)) for index, value in enumerate(request.to)]
    violations = [
        *_sender(sender, tenant_domains, sendable_domains),
        *(found for found in (reply_to, *recipients) if isinstance(found, Violation)),
        *_duplicates(recipients),
        *_content(request, template),
        *_schedule(request, now),
        *_attachments(request),
        *_headers(request),
    ]
    mailboxes = tuple(found for found in recipients if isinstance(found, Mailbox))
    if violations or isinstance(sender, Violation) or isinstance(reply_to, Violation):
        return violations
    return Addresses(sender, reply_to, mailboxes)


def check_template_data(request: SendRequest, template: TemplateVersion) -> list[Violation]:
    """What is wrong with ``request``'s data for another version of its template (the
    experiment's variant some of its recipients get)."""
    return list(_content(request, template))


def _mailbox(value: str, where: str) -> Mailbox | Violation:
    try:
        return parse_mailbox(value)
    except UnsendableAddress as error:
        return Violation(error.code, where, str(error))


def _sender(
    sender: Mailbox | Violation,
    tenant_domains: Sequence[str],
    sendable_domains: Sequence[str] | None,
) -> Iterator[Violation]:
    if isinstance(sender, Violation):
        yield sender
    elif not sender_allowed(domain := domain_of(sender.address), tenant_domains):
        yield Violation(
            "sender_not_allowed",
            pointer("from"),
            f"{domain} is not one of this tenant's sending domains",
        )
    elif sendable_domains is not None and not sender_allowed(domain, sendable_domains):
        yield Violation(
            "domain_not_verified",
            pointer("from"),
            f"{domain} is not verified: publish the records GET /v1/domains/{domain} lists,"
            f" then POST /v1/domains/{domain}/verify",
        )


def _duplicates(recipients: Sequence[Mailbox | Violation]) -> Iterator[Violation]:
    seen: set[str] = set()
    for index, recipient in enumerate(recipients):
        if isinstance(recipient, Violation):
            continue
        address = recipient.address.lower()
        if address in seen:
            yield Violation(
                "duplicate_recipient", pointer("to", index), f"{address} is listed twice"
            )
        seen.add(address)


def _content(request: SendRequest, template: TemplateVersion | None) -> Iterator[Violation]:
    if request.template is None:
        if not request.subject:
            yield Violation("missing_content", pointer("subject"), "a subject or a template")
        if not request.html and not request.text:
            yield Violation("missing_content", pointer("html"), "html or text, or a template")
        if request.template_version is not None:
            yield Violation(
                "template_required", pointer("template_version"), "a version of which template?"
            )
        return
    if template is None:
        yield Violation(
            "unknown_template", pointer("template"), f"no template named {request.template!r}"
        )
        return
    for issue in check_data(template, request.data, request.locale):
        where = pointer("template") if issue.name is None else pointer("data", issue.name)
        yield Violation(issue.code, where, issue.detail)


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
        except ValueError:  # binascii.Error, or a non-ASCII character in the text
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
        if fault := header_fault(name, value):
            yield Violation(fault.code, pointer("headers", name), fault.reason)
