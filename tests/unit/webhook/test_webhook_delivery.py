"""Which webhook answers are worth another post, and how long to wait before it."""

from __future__ import annotations

import pytest

from services.webhook.delivery import backoff_seconds, retryable


@pytest.mark.parametrize("code", [None, 408, 429, 500, 502, 503, 504])
def test_transient_answers_are_retried(code: int | None) -> None:
    assert retryable(code)


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410, 413, 422])
def test_refusals_are_not(code: int) -> None:
    assert not retryable(code)


def test_backoff_doubles_from_the_base() -> None:
    assert [backoff_seconds(n, 0.5) for n in range(1, 5)] == [0.5, 1.0, 2.0, 4.0]
