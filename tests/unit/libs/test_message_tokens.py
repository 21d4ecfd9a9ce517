"""Signed message tokens and the addresses that carry them: forgery, case, length, purpose."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.message_tokens import (
    MAC_CHARS,
    MAX_LOCAL_PART,
    BadBounceAddress,
    MessageToken,
    MissingSecret,
    Purpose,
    sign,
    signing_key,
)
from libs.settings import Settings
from libs.verp import (
    read_return_path,
    read_token_address,
    return_path,
    token_address,
)

KEY = b"test-secret"
TENANT = str(uuid.uuid4())
MESSAGE = str(uuid.uuid4())
BOUNCES = "bounces@sendarix.test"


def test_a_return_path_names_its_message_and_verifies_for_its_tenant_only() -> None:
    address = return_path(KEY, TENANT, MESSAGE, BOUNCES)
    local, _, domain = address.rpartition("@")
    assert domain == "sendarix.test" and len(local) <= MAX_LOCAL_PART
    assert local == local.lower()
    token = read_return_path(address, BOUNCES)
    assert token is not None and token.message_id == MESSAGE
    assert token.verified(KEY, Purpose.RETURN_PATH, TENANT)
    assert not token.verified(KEY, Purpose.RETURN_PATH, str(uuid.uuid4()))
    assert not token.verified(b"another-secret", Purpose.RETURN_PATH, TENANT)
    assert not token.verified(KEY, Purpose.UNSUBSCRIBE, TENANT)


def test_case_folding_on_the_way_back_keeps_the_token() -> None:
    address = return_path(KEY, TENANT, MESSAGE, BOUNCES)
    for folded in (address.upper(), f"<{address}>", f" {address.title()} "):
        token = read_return_path(folded, BOUNCES)
        assert token is not None and token.verified(KEY, Purpose.RETURN_PATH, TENANT)


def test_a_token_for_one_message_does_not_name_another() -> None:
    genuine = sign(KEY, Purpose.RETURN_PATH, TENANT, MESSAGE)
    other = str(uuid.uuid4())
    swapped = MessageToken(other, genuine.mac)
    assert not swapped.verified(KEY, Purpose.RETURN_PATH, TENANT)


def test_a_forged_mac_does_not_verify() -> None:
    genuine = sign(KEY, Purpose.RETURN_PATH, TENANT, MESSAGE)
    flipped = ("0" if genuine.mac[0] != "0" else "1") + genuine.mac[1:]
    assert not MessageToken(MESSAGE, flipped).verified(KEY, Purpose.RETURN_PATH, TENANT)


def test_extra_signed_values_must_match() -> None:
    token = sign(KEY, Purpose.UNSUBSCRIBE, TENANT, MESSAGE, "broadcast")
    assert token.verified(KEY, Purpose.UNSUBSCRIBE, TENANT, "broadcast")
    assert not token.verified(KEY, Purpose.UNSUBSCRIBE, TENANT, "transactional")
    assert not token.verified(KEY, Purpose.UNSUBSCRIBE, TENANT)


@pytest.mark.parametrize(
    "address",
    [
        "bounces@sendarix.test",  # no token
        f"bounces+{MESSAGE}@sendarix.test",  # the old, unsigned form
        "bounces+" + "0" * 32 + "." + "0" * (MAC_CHARS - 1) + "@sendarix.test",  # truncated
        "bounces+" + "0" * 32 + "." + "0" * (MAC_CHARS + 1) + "@sendarix.test",  # too long
        "bounces+" + "z" * 32 + "." + "0" * MAC_CHARS + "@sendarix.test",  # not hex
        "bounces+" + "0" * 32 + "." + "g" * MAC_CHARS + "@sendarix.test",
        "postmaster+" + "0" * 32 + "." + "0" * MAC_CHARS + "@sendarix.test",  # another base
        "bounces+" + "0" * 32 + "." + "0" * MAC_CHARS + "@evil.test",  # another domain
        "bounces+" + "0" * 32 + "." + "0" * MAC_CHARS + "@sub.sendarix.test",
        "",
        "@",
        "+",
    ],
)
def test_what_is_not_a_token_address(address: str) -> None:
    assert read_return_path(address, BOUNCES) is None


@given(st.text(max_size=120))
def test_reading_any_text_never_raises(text: str) -> None:
    read_return_path(text, BOUNCES)
    MessageToken.parse(text)


def test_token_text_round_trips() -> None:
    token = sign(KEY, Purpose.UNSUBSCRIBE, TENANT, MESSAGE, "broadcast")
    assert MessageToken.parse(str(token)) == token
    assert MessageToken.parse(str(token).upper()) == token


@pytest.mark.parametrize(
    "bounce_address",
    ["b" * 11 + "@sendarix.test", "ops+bounces@sendarix.test", "bounces", "@sendarix.test"],
)
def test_a_bounce_address_that_cannot_carry_tokens_is_refused_at_start_up(
    bounce_address: str,
) -> None:
    with pytest.raises(BadBounceAddress):
        signing_key(Settings(token_secret="s", bounce_address=bounce_address))


def test_the_longest_accepted_base_makes_a_deliverable_address() -> None:
    base = "b" * 10
    assert signing_key(Settings(token_secret="s", bounce_address=f"{base}@sendarix.test"))
    token = sign(KEY, Purpose.RETURN_PATH, TENANT, MESSAGE)
    assert len(token_address(base, "sendarix.test", token).partition("@")[0]) == MAX_LOCAL_PART
    address = token_address("unsub", "sendarix.test", token)
    assert read_token_address(address, "unsub", "sendarix.test") == token


def test_the_secret_is_required() -> None:
    with pytest.raises(MissingSecret):
        signing_key(Settings(token_secret=""))
    assert signing_key(Settings(token_secret="s3cret")) == b"s3cret"
