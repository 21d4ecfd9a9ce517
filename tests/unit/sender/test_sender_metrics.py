"""SMTP replies by class (``services.sender.metrics``)."""

from __future__ import annotations

import pytest

from schemas.pipeline import SmtpReply
from services.sender.metrics import reply_class


@pytest.mark.parametrize(
    ("code", "expected"), [(250, "2xx"), (251, "2xx"), (421, "4xx"), (452, "4xx"), (550, "5xx")]
)
def test_a_reply_is_counted_by_its_first_digit(code: int, expected: str) -> None:
    assert reply_class(SmtpReply(code=code, text="")) == expected


def test_no_reply_is_its_own_class() -> None:
    assert reply_class(SmtpReply(code=0, text="connection refused")) == "none"
    assert reply_class(None) == "none"
