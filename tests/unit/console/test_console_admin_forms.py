"""What the suppressions, templates and webhooks pages make of their forms: pure functions."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from services.console.controls import back_to
from services.console.pages_templates import MAX_DATA_CHARS, parsed_data, sample_data
from services.console.pages_webhooks import replay_body
from services.console.times import utc


def test_times_are_shown_in_utc_to_the_second() -> None:
    assert utc("2026-05-01T14:30:05.123+02:00") == "2026-05-01 12:30:05Z"
    assert utc("2026-05-01T12:30:05") == "2026-05-01 12:30:05Z"
    assert (utc(None), utc(""), utc("soon")) == ("", "", "soon")


def test_a_control_goes_back_with_what_happened_and_only_the_filters_given() -> None:
    answer = back_to("/suppressions", address="a+b@example.org", stream="", done="Removed & gone")
    assert answer.status_code == 303
    target = urlsplit(answer.headers["location"])
    assert target.path == "/suppressions"
    assert parse_qs(target.query) == {"address": ["a+b@example.org"], "done": ["Removed & gone"]}
    assert back_to("/webhooks").headers["location"] == "/webhooks"


def test_the_sample_data_starts_from_the_declared_examples() -> None:
    version = {"variables": [{"name": "code", "example": "123456"}, {"name": "app"}]}
    assert json.loads(sample_data(version)) == {"code": "123456"}
    assert sample_data(None) == "{}"


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ('{"name": ', "not JSON"),
        ("[1, 2]", "a JSON object"),
        ("{}" + " " * MAX_DATA_CHARS, f"{MAX_DATA_CHARS} characters at most"),
    ],
)
def test_unusable_sample_data_says_why(typed: str, says: str) -> None:
    refused = parsed_data(typed)
    assert isinstance(refused, str) and says in refused


def test_usable_sample_data_is_an_object() -> None:
    assert parsed_data('{"name": "Zoë"}') == {"name": "Zoë"}
    assert parsed_data("") == {}


def test_a_replay_is_one_event_or_a_range_read_as_utc() -> None:
    assert replay_body({"event_id": " e-1 ", "since": "2026-05-01T10:00"}) == {"event_id": "e-1"}
    assert replay_body({"since": "2026-05-01T10:00", "until": ""}) == {
        "since": "2026-05-01T10:00:00+00:00"
    }
    assert replay_body({"since": "2026-05-01T10:00:30", "until": "2026-05-01T11:00"}) == {
        "since": "2026-05-01T10:00:30+00:00",
        "until": "2026-05-01T11:00:00+00:00",
    }
    assert "start of the range" in str(replay_body({}))
    assert "date and time" in str(replay_body({"since": "yesterday"}))
    assert "date and time" in str(replay_body({"since": "2026-05-01T10:00", "until": "later"}))
