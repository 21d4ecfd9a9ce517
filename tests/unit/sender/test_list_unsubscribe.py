"""Which mail offers one-click unsubscribe, and the headers it carries."""

from __future__ import annotations

import uuid
from email import message_from_bytes, policy

import pytest

from libs.message_tokens import MessageToken, Purpose
from libs.verp import read_token_address
from schemas.common import Lane, Stream
from services.sender.list_unsubscribe import offers_unsubscribe, one_click
from services.sender.mime import build_message
from tests.unit.sender.jobs import delivery_job

KEY = b"test-secret"


@pytest.mark.parametrize(
    ("stream", "category", "offered"),
    [
        (Stream.BROADCAST, "newsletter", True),
        (Stream.BROADCAST, None, True),
        (Stream.TRANSACTIONAL, "notification", True),
        (Stream.TRANSACTIONAL, "billing", True),
        (Stream.TRANSACTIONAL, None, True),
        (Stream.TRANSACTIONAL, "otp", False),
        (Stream.TRANSACTIONAL, "password_reset", False),
        (Stream.TRANSACTIONAL, "login_verification", False),
        (Stream.TRANSACTIONAL, "security_alert", False),
    ],
)
def test_who_offers_unsubscribe(stream: Stream, category: str | None, offered: bool) -> None:
    job = delivery_job(stream=stream, category=category, lane=Lane.NORMAL)
    assert offers_unsubscribe(job.message) is offered


def test_a_message_with_its_own_list_headers_keeps_them() -> None:
    job = delivery_job(category="notification", headers={"list-unsubscribe": "<https://a.test>"})
    assert not offers_unsubscribe(job.message)


def test_the_headers_point_at_a_signed_link_and_a_signed_mailto() -> None:
    job = delivery_job(category="notification", stream=Stream.TRANSACTIONAL, lane=Lane.NORMAL)
    spec = job.message
    offer = one_click(KEY, spec, "http://127.0.0.1:8080/", "bounces@sendarix.test")
    built = build_message(job, offer)
    assert isinstance(built, bytes)
    message = message_from_bytes(built, policy=policy.SMTP)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link, mailto = (part.strip(" <>") for part in message["List-Unsubscribe"].split(","))
    assert link.startswith("http://127.0.0.1:8080/v1/unsubscribe/")
    token = MessageToken.parse(link.rpartition("/")[2])
    assert token is not None and token.message_id == spec.message_id
    assert token.verified(KEY, Purpose.UNSUBSCRIBE, spec.tenant_id, "transactional")
    assert not token.verified(KEY, Purpose.UNSUBSCRIBE, spec.tenant_id, "broadcast")
    address = mailto.removeprefix("mailto:")
    assert read_token_address(address, "unsub", "sendarix.test") == token
    assert len(address.partition("@")[0]) <= 64


def test_without_an_offer_there_are_no_list_headers() -> None:
    built = build_message(delivery_job())
    assert isinstance(built, bytes) and b"List-Unsubscribe" not in built


def test_a_message_id_that_is_a_uuid_in_any_form_signs_the_same() -> None:
    message_id = str(uuid.uuid4())
    job = delivery_job(message_id=message_id.upper(), category="notification", lane=Lane.NORMAL)
    offer = one_click(KEY, job.message, "http://x.test", "bounces@sendarix.test")
    assert message_id.replace("-", "") in offer.url
