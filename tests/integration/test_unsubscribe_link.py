"""One-click unsubscribe through the gateway (RFC 8058): the POST reports ``unsubscribed`` once,
the GET never does, and no token but a genuine one for the message and its stream does anything."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from libs.message_tokens import MessageToken, Purpose, sign, signing_key
from libs.settings import Settings
from libs.topics import EVENTS, public_topic
from libs.verp import UNSUBSCRIBE_PATH
from schemas.events import MessageState, event_id
from tests.support import TopicTap, logged_delivered

pytestmark = pytest.mark.integration

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def post(
    client: httpx.AsyncClient, url: str, body: bytes = b"List-Unsubscribe=One-Click"
) -> httpx.Response:
    """The POST a mailbox provider's unsubscribe button makes."""
    return await client.post(url, content=body, headers=FORM)


@pytest.fixture
async def tap(settings: Settings) -> AsyncIterator[TopicTap]:
    async with TopicTap(settings, public_topic(EVENTS, settings.topic_prefix)) as running:
        yield running


def link(settings: Settings, row: asyncpg.Record, stream: str | None = None) -> str:
    token = sign(
        signing_key(settings),
        Purpose.UNSUBSCRIBE,
        str(row["tenant_id"]),
        str(row["id"]),
        stream or row["stream"],
    )
    return f"{UNSUBSCRIBE_PATH}{token}"


async def test_the_post_unsubscribes_once_and_the_get_never(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tap: TopicTap, settings: Settings
) -> None:
    row = await logged_delivered(pool, f"reader-{uuid.uuid4().hex[:6]}@example.com", "broadcast")
    url = link(settings, row)

    page = await client.get(url)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "List-Unsubscribe" in page.text and f"action='{url}'" in page.text
    first = await post(client, url)
    prefix, _, token = url.rpartition("/")
    again = await post(client, f"{prefix}/{token.upper()}")  # a repeat, the token case-folded
    assert (first.status_code, again.status_code) == (200, 200)

    events = await tap.wait_for(lambda e: e.get("subject") == str(row["id"]), count=2)
    assert {e["id"] for e in events} == {event_id(str(row["id"]), MessageState.UNSUBSCRIBED)}
    assert events[0]["type"] == "sendarix.message.unsubscribed"
    data = events[0]["data"]
    assert (data["stream"], data["trace_id"]) == ("broadcast", row["trace_id"])
    assert data["tenant_id"] == str(row["tenant_id"])


async def test_no_token_but_the_genuine_one_does_anything(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tap: TopicTap, settings: Settings
) -> None:
    row = await logged_delivered(pool, f"reader-{uuid.uuid4().hex[:6]}@example.com", "broadcast")
    other = await logged_delivered(pool, f"other-{uuid.uuid4().hex[:6]}@example.com")
    genuine = MessageToken.parse(link(settings, row).rpartition("/")[2])
    assert genuine is not None
    key, tenant = signing_key(settings), str(row["tenant_id"])
    return_path_token = sign(key, Purpose.RETURN_PATH, tenant, str(row["id"]))
    forged = sign(b"a forger's key", Purpose.UNSUBSCRIBE, str(row["tenant_id"]), str(row["id"]))
    refused = [
        f"/v1/unsubscribe/{forged}",
        link(settings, row, stream="transactional"),  # signed for another stream
        f"/v1/unsubscribe/{MessageToken(str(other['id']), genuine.mac)}",  # another message
        f"/v1/unsubscribe/{return_path_token}",  # a token of another purpose
        "/v1/unsubscribe/not-a-token",
        "/v1/unsubscribe/" + "é" * 53,
    ]
    for url in refused:
        for answer in (await client.get(url), await post(client, url)):
            assert answer.status_code == 404, url
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["code"] == "not_found"

    url = link(settings, row)
    wrong = await post(client, url, b"unsubscribe=yes")
    assert (wrong.status_code, wrong.json()["code"]) == (400, "invalid_unsubscribe_request")
    huge = await post(client, url, b"x" * 10_000)
    assert (huge.status_code, huge.json()["code"]) == (413, "payload_too_large")

    await asyncio.sleep(1)
    mine = {str(row["id"]), str(other["id"])}
    assert [e for e in tap.json_values() if e.get("subject") in mine] == []
