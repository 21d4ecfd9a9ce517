"""The benchmark's arithmetic: plans, percentiles, and what accept and arrival times add up to."""

from __future__ import annotations

from email import message_from_bytes

from schemas.common import Lane
from tests.bench.baselines import raw_message
from tests.bench.load import Accepted, Entry, mixed_plan
from tests.bench.measure import latency_summary, outcome, percentile
from tests.bench.sink import message_id_of

SECOND = 1_000_000_000


def test_mixed_plan_is_one_otp_in_twenty_taking_turns_over_the_entries() -> None:
    plan = mixed_plan(200)

    assert sum(1 for item in plan if item.lane is Lane.CRITICAL) == 10
    assert {item.lane for item in plan} == {Lane.CRITICAL, Lane.BULK}
    assert [item.entry for item in plan[:4]] == [Entry.HTTP, Entry.TOPIC, Entry.HTTP, Entry.TOPIC]


def test_percentile_is_nearest_rank() -> None:
    values = [float(value) for value in range(1, 101)]

    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0
    assert latency_summary([]) == {"count": 0}


def test_outcome_measures_from_first_accept_to_last_arrival_per_lane() -> None:
    start = 1_700_000_000 * SECOND
    accepted = [
        Accepted("a", Lane.BULK, Entry.TOPIC, start),
        Accepted("b", Lane.BULK, Entry.HTTP, start + SECOND),
        Accepted("c", Lane.CRITICAL, Entry.HTTP, start + SECOND),
        Accepted("lost", Lane.BULK, Entry.TOPIC, start + SECOND),
    ]
    received = {"a": start + SECOND, "b": start + 4 * SECOND, "c": start + SECOND + SECOND // 10}

    result = outcome(accepted, received, planned=5)

    assert (result["planned"], result["accepted"], result["delivered"]) == (5, 4, 3)
    assert result["missing"] == 1
    assert result["seconds"] == 4.0
    assert result["delivered_per_s"] == 0.8
    assert result["latency"]["critical"]["p99_ms"] == 100.0
    assert result["latency"]["bulk"]["count"] == 2
    assert result["latency"]["bulk"]["max_ms"] == 3000.0
    assert result["latency_by_entry"]["topic"]["count"] == 1
    assert sorted(point[0] for point in result["points"]) == [1.0, 1.1, 4.0]


def test_outcome_of_nothing_delivered_has_no_rates() -> None:
    accepted = [Accepted("a", Lane.BULK, Entry.TOPIC, SECOND)]

    result = outcome(accepted, {}, planned=1)

    assert result["delivered"] == 0 and "delivered_per_s" not in result


def test_raw_message_has_the_size_and_the_message_id_the_sink_reads() -> None:
    raw = raw_message("raw-1", 2048)

    assert 1900 <= len(raw) <= 2048
    parsed = message_from_bytes(raw)
    assert message_id_of(parsed["Message-ID"].strip("<>")) == "raw-1"
