"""The console's session cookie and its log-in redirect: pure functions, no server."""

from __future__ import annotations

import pytest

from libs.settings import Settings
from services.console.pages_login import safe_next
from services.console.session import Session, seal, session_fernet, unseal

SESSION = Session(
    api_key="sx_secret",
    tenant_id="t-1",
    tenant_name="acme",
    key_name="support",
    scopes=("read",),
    operator=False,
    csrf="token",
)


def test_a_sealed_session_opens_again_and_hides_the_key() -> None:
    fernet = session_fernet(Settings(console_secret="one"))
    cookie = seal(fernet, SESSION)
    assert "sx_secret" not in cookie
    assert unseal(fernet, cookie, 3600) == SESSION
    assert not SESSION.can_write


@pytest.mark.parametrize(
    "tamper",
    [
        lambda cookie: cookie[:-2] + ("A" if cookie[-2] != "A" else "B") + cookie[-1],
        lambda cookie: "x" + cookie,
        lambda cookie: "",
    ],
)
def test_a_tampered_cookie_is_no_session(tamper: object) -> None:
    fernet = session_fernet(Settings(console_secret="one"))
    cookie = seal(fernet, SESSION)
    assert unseal(fernet, tamper(cookie), 3600) is None  # type: ignore[operator]


def test_a_cookie_of_another_secret_or_too_old_is_no_session() -> None:
    cookie = seal(session_fernet(Settings(console_secret="one")), SESSION)
    assert unseal(session_fernet(Settings(console_secret="two")), cookie, 3600) is None
    assert unseal(session_fernet(Settings(console_secret="one")), cookie, -1) is None


@pytest.mark.parametrize(
    ("asked", "goes_to"),
    [
        ("/messages/1?x=2", "/messages/1?x=2"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_after_log_in_only_a_console_path_is_followed(asked: str | None, goes_to: str) -> None:
    assert safe_next(asked) == goes_to
