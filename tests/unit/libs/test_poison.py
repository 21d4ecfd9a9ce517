"""The poison policy: what is waited out, what is parked, and how a parked record says why."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
)

from libs.poison import is_transient, spec_in
from schemas.pipeline import ParkedRecord
from tests.records import message_spec


def test_spec_found_at_message_or_job_message() -> None:
    spec = message_spec()
    valid = json.loads(spec.model_dump_json())
    assert spec_in(json.dumps({"message": valid, "content": "broken"}).encode()) == spec
    assert spec_in(json.dumps({"job": {"message": valid}, "due_at": 1}).encode()) == spec


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'"text"', b"{}", b'{"message": {"message_id": "m"}}', b"\xff"],
)
def test_unidentifiable_records(body: bytes) -> None:
    assert spec_in(body) is None


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (KafkaConnectionError(), True),
        (NotLeaderForPartitionError(), True),
        (asyncpg.exceptions.ConnectionDoesNotExistError(), True),
        (asyncpg.exceptions.DeadlockDetectedError(), True),
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (MessageSizeTooLargeError(), False),
        (asyncpg.exceptions.UntranslatableCharacterError(), False),
        (ValueError("bad"), False),
        (KeyError("x"), False),
        (RecursionError(), False),
    ],
)
def test_only_a_dependency_that_is_down_is_transient(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


def test_parked_headers_round_trip() -> None:
    note = ParkedRecord(
        reason="invalid_request",
        detail="/to/0: not an address; café",
        pointers=("/to/0", "/data/a,b"),
        exception="ValueError",
        service="ingest",
        role="intake",
        topic="sendarix.send.requests",
        partition=3,
        offset=42,
        message_id=None,
        parked_at=datetime(2026, 11, 29, tzinfo=UTC),
    )
    headers = note.headers()
    assert all(name.startswith("sendarix-dlq-") for name, _ in headers)
    assert ParkedRecord.from_headers([("traceparent", b"00-x"), *headers]) == note
