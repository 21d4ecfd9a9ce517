"""Problem documents: RFC 9457 fields, a code, a status per code, a pointer per bad field."""

from __future__ import annotations

import json

from services.ingest.problems import PROBLEM_JSON, ProblemError
from services.ingest.validate import Violation


def test_violations_render_as_one_problem_with_every_pointer() -> None:
    error = ProblemError.of(
        [
            Violation("invalid_address", "/to/0", "not an address"),
            Violation("missing_template_data", "/data/code", "template 'otp' needs 'code'"),
        ]
    )
    response = error.response()
    assert response.status_code == 422
    assert response.media_type == PROBLEM_JSON
    assert json.loads(bytes(response.body)) == {
        "type": "https://sendarix.dev/problems/invalid_address",
        "title": "Unprocessable Entity",
        "status": 422,
        "detail": "2 problems with the request",
        "code": "invalid_address",
        "errors": [
            {"pointer": "/to/0", "detail": "not an address"},
            {"pointer": "/data/code", "detail": "template 'otp' needs 'code'"},
        ],
    }


def test_each_code_has_its_status() -> None:
    statuses = {
        "malformed_json": 400,
        "unauthorized": 401,
        "sender_not_allowed": 403,
        "not_found": 404,
        "idempotency_key_reused": 409,
        "payload_too_large": 413,
        "unsupported_media_type": 415,
        "send_at_too_far": 422,
        "unavailable": 503,
    }
    for code, status in statuses.items():
        document = ProblemError(code, "x").document()
        assert (document.status, document.code) == (status, code)


def test_a_single_violation_keeps_its_sentence_and_unavailable_says_when_to_retry() -> None:
    one = ProblemError.of([Violation("sender_not_allowed", "/from", "other.test is not yours")])
    assert (one.status, one.detail) == (403, "other.test is not yours")
    unavailable = ProblemError.unavailable("broker down").response()
    assert unavailable.status_code == 503
    assert unavailable.headers["retry-after"].isdigit()
    explicit = ProblemError("http_error", "gone", status=410).document()
    assert (explicit.status, explicit.title) == (410, "Gone")
