"""Finding the message inside a pipeline record that cannot be decoded as a whole."""

from __future__ import annotations

import json

import pytest

from libs.poison import spec_in
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
