"""Traffic the way careful clients send it: over HTTP and straight onto the send-requests topic.

Both retry until the platform takes the message, always under the same idempotency key, so a
retry after a timeout or a broker outage never becomes a second message.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

RETRYABLE_STATUSES = frozenset({502, 503, 504})
"""The gateway could not take the request now (broker or database down): try again."""

PAUSE = 0.2
"""Seconds between two attempts of one message."""


def send_request(index: int, sender_domain: str, simulator_domain: str) -> dict[str, Any]:
    """Message ``index`` of a run: one in ten an OTP, the rest notifications, to the simulator."""
    return {
        "from": f"alerts@{sender_domain}",
        "to": f"success+{index}@{simulator_domain}",
        "subject": f"Chaos {index}",
        "text": "Survive this.",
        "category": "otp" if index % 10 == 0 else "notification",
    }


class Refused(Exception):
    """The gateway refused a request for good (not a status worth retrying)."""


@dataclass
class Ledger:
    """What the platform accepted so far, by path."""

    http_ids: list[str] = field(default_factory=list)
    """Message ids answered 202."""
    topic_keys: list[str] = field(default_factory=list)
    """Idempotency keys of records the broker acknowledged."""
    refused: list[str] = field(default_factory=list)
    """Why each refused request was refused."""

    @property
    def accepted(self) -> int:
        return len(self.http_ids) + len(self.topic_keys)

    @property
    def settled(self) -> int:
        """Messages the traffic is done with: accepted or refused."""
        return self.accepted + len(self.refused)


async def post_until_accepted(
    http: httpx.AsyncClient, api_key: str, body: dict[str, Any], key: str
) -> list[str]:
    """POST one message until it is answered 202; return its message ids.

    Transport errors (gateway killed, timeouts) and 502/503/504 are retried with the same
    Idempotency-Key; any other answer raises :class:`Refused`.
    """
    headers = {"Authorization": f"Bearer {api_key}", "Idempotency-Key": key}
    while True:
        try:
            response = await http.post("/v1/messages", json=body, headers=headers)
        except httpx.TransportError:
            await asyncio.sleep(PAUSE)
            continue
        if response.status_code == 202:
            return [message["id"] for message in response.json()["messages"]]
        if response.status_code not in RETRYABLE_STATUSES:
            raise Refused(f"{response.status_code} {_problem_code(response)}")
        await asyncio.sleep(PAUSE)


async def produce_until_acked(
    producer: AIOKafkaProducer, topic: str, record: dict[str, Any], key: str
) -> None:
    """Produce one send request until the broker acknowledges it (acks=all)."""
    value = json.dumps(record).encode()
    while True:
        try:
            await producer.send_and_wait(topic, value, key=key.encode())
            return
        except KafkaError:
            await asyncio.sleep(PAUSE)


def _problem_code(response: httpx.Response) -> str:
    """The machine-readable code of a problem answer, or its start when it is not one."""
    try:
        return str(response.json()["code"])
    except (ValueError, KeyError, TypeError):
        return response.text[:80]
