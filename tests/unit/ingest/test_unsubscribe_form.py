"""The RFC 8058 POST body, in both encodings it may come in, and the GET page."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.routes_unsubscribe import confirmation_page, one_click_requested

FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data; boundary=XyZ"


def multipart(name: str, value: str) -> bytes:
    return (
        f'--XyZ\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n--XyZ--\r\n'
    ).encode()


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        (FORM, b"List-Unsubscribe=One-Click", True),
        (f"{FORM}; charset=utf-8", b"List-Unsubscribe=One-Click", True),
        (FORM, b"a=b&List-Unsubscribe=One-Click", True),
        (FORM, b"List-Unsubscribe=One-Click-Not", False),
        (FORM, b"", False),
        (FORM, b"\xff\xfe", False),
        (MULTIPART, multipart("List-Unsubscribe", "One-Click"), True),
        (MULTIPART, multipart("List-Unsubscribe", "Other"), False),
        (MULTIPART, b"garbage", False),
        ("multipart/form-data", multipart("List-Unsubscribe", "One-Click"), False),  # no boundary
        ("text/plain", b"List-Unsubscribe=One-Click", False),
        ("", b"List-Unsubscribe=One-Click", False),
    ],
)
def test_one_click_bodies(content_type: str, body: bytes, expected: bool) -> None:
    assert one_click_requested(content_type, body) is expected


def test_the_page_escapes_what_it_shows_and_posts_the_form() -> None:
    page = confirmation_page("/v1/unsubscribe/x'><script>", "<b>broadcast</b>")
    assert "<script>" not in page and "<b>broadcast" not in page
    assert "method='post'" in page and "name='List-Unsubscribe' value='One-Click'" in page


@given(st.text(max_size=80), st.binary(max_size=400))
def test_any_body_is_read_without_raising(content_type: str, body: bytes) -> None:
    one_click_requested(content_type, body)
    one_click_requested(MULTIPART, body)
