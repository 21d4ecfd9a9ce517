"""RFC 9457 problem documents: the one shape of every error the HTTP gateway answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from services.ingest.validate import Violation

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://sendarix.dev/problems/"
RETRY_AFTER_SECONDS = 5

CODE_STATUS: dict[str, int] = {
    "malformed_json": 400,
    "too_deep": 400,
    "invalid_idempotency_key": 400,
    "invalid_unsubscribe_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "sender_not_allowed": 403,
    "key_not_permitted": 403,
    "complaint_needs_admin": 403,
    "operator_only": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "idempotency_key_reused": 409,
    "last_admin_key": 409,
    "key_not_usable": 409,
    "domain_exists": 409,
    "domain_limit_reached": 409,
    "not_cancellable": 409,
    "rule_limit_reached": 409,
    "template_exists": 409,
    "layout_exists": 409,
    "experiment_running": 409,
    "payload_too_large": 413,
    "line_too_long": 413,
    "unsupported_media_type": 415,
    "rate_limited": 429,
    "request_timeout": 408,
    "unavailable": 503,
    "not_ready": 503,
}
"""The HTTP status of each problem code; every other code is a 422 (a field is wrong)."""


class FieldError(BaseModel):
    """One bad field of the request body."""

    pointer: str
    detail: str


class ProblemDocument(BaseModel):
    """An ``application/problem+json`` body; ``code`` is the machine-readable reason. Some
    problems carry extension members of their own (RFC 9457 §3.2), e.g. a template's
    ``issues``."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldError] = []


class ProblemError(Exception):
    """Raised by a route to answer with a problem document instead of its result."""

    def __init__(
        self,
        code: str,
        detail: str,
        violations: Sequence[Violation] = (),
        headers: Mapping[str, str] | None = None,
        status: int | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.violations = tuple(violations)
        self.headers = dict(headers or {})
        self.status = status or CODE_STATUS.get(code, 422)
        self.extensions = dict(extensions or {})
        if self.status == HTTPStatus.SERVICE_UNAVAILABLE:
            self.headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))

    @classmethod
    def of(cls, violations: Sequence[Violation]) -> ProblemError:
        """The problem that refuses a request for ``violations`` (the first one names it)."""
        count = len(violations)
        detail = violations[0].detail if count == 1 else f"{count} problems with the request"
        return cls(violations[0].code, detail, violations)

    @classmethod
    def unavailable(cls, detail: str) -> ProblemError:
        """The answer when a dependency (broker, database) cannot take the request now (every
        503 says when to retry)."""
        return cls("unavailable", detail)

    def document(self) -> ProblemDocument:
        """The problem as its RFC 9457 document."""
        return ProblemDocument(
            type=PROBLEM_TYPE_BASE + self.code,
            title=HTTPStatus(self.status).phrase,
            status=self.status,
            detail=self.detail,
            code=self.code,
            errors=[FieldError(pointer=v.pointer, detail=v.detail) for v in self.violations],
            **self.extensions,
        )

    def response(self) -> JSONResponse:
        """The problem as an HTTP response."""
        return JSONResponse(
            self.document().model_dump(),
            status_code=self.status,
            headers=self.headers,
            media_type=PROBLEM_JSON,
        )
