"""The benchmark's arithmetic: plans, percentiles, and what accept and arrival times add up to."""

from __future__ import annotations

from email import message_from_bytes

from schemas.common import Lane
from tests.bench.baselines import raw_message
from tests.bench.edge import absolute_times
from tests.bench.load import STICKY_RECORDS, Accepted, StickyPartitioner, batch_results
from tests.bench.measure import (
    BENCH_CLIENT,
    BENCH_SAMPLER,
    cpu_per_message,
    evenly,
    latency_summary,
    outcome,
    percentile,
)
from tests.bench.plans import Entry, Kind, flood_plan, mixed_plan
from tests.bench.report import edge_goals
from tests.bench.sink import message_id_of

SECOND = 1_000_000_000


def test_mixed_plan_is_one_otp_in_twenty_and_every_lane_takes_turns_over_its_doors() -> None:
    plan = mixed_plan(400)

    otps = [item for item in plan if item.kind is Kind.OTP]
    bulk = [item for item in plan if item.kind is Kind.NOTICE]
    assert len(otps) == 20 and len(bulk) == 380
    assert [item.entry for item in otps[:4]] == [Entry.HTTP, Entry.TOPIC] * 2
    assert [item.entry for item in bulk[:4]] == [Entry.TOPIC, Entry.BATCH] * 2
    assert sum(1 for item in bulk if item.entry is Entry.BATCH) == 190
    assert plan[19].kind is Kind.OTP and plan[18].kind is Kind.NOTICE


def test_flood_plan_is_half_security_mail_half_broadcast_asking_for_critical() -> None:
    plan = flood_plan(100)

    assert sum(1 for item in plan if item.kind is Kind.OTP) == 50
    assert sum(1 for item in plan if item.kind is Kind.BROADCAST) == 50
    assert {item.entry for item in plan} == {Entry.TOPIC, Entry.BATCH}
    assert {item.entry for item in plan if item.kind is Kind.OTP} == {Entry.TOPIC, Entry.BATCH}
    assert Kind.BROADCAST.lane is Lane.BULK and Kind.OTP.lane is Lane.CRITICAL


def test_batch_results_keep_the_order_and_count_refusals() -> None:
    answer = {
        "results": [
            {
                "status": 202,
                "accepted": {
                    "id": "m-1",
                    "status": "accepted",
                    "trace_id": "t" * 32,
                    "messages": [{"id": "m-1", "to": "a@example.com"}],
                },
                "problem": None,
            },
            {"status": 422, "accepted": None, "problem": {"code": "invalid_request"}},
            {
                "status": 202,
                "accepted": {"id": "m-3", "trace_id": "u" * 32, "messages": []},
                "problem": None,
            },
        ]
    }

    accepted, refused = batch_results(answer, [Kind.NOTICE, Kind.NOTICE, Kind.OTP], 7)

    assert [(item.message_id, item.kind) for item in accepted] == [
        ("m-1", Kind.NOTICE),
        ("m-3", Kind.OTP),
    ]
    assert all(item.entry is Entry.BATCH and item.at_ns == 7 for item in accepted)
    assert accepted[0].trace_id == "t" * 32
    assert refused == ["batch item 422 invalid_request"]


def test_percentile_is_nearest_rank() -> None:
    values = [float(value) for value in range(1, 101)]

    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0
    assert latency_summary([]) == {"count": 0}


def test_outcome_measures_from_first_accept_to_last_arrival_per_lane() -> None:
    start = 1_700_000_000 * SECOND
    accepted = [
        Accepted("a", Kind.NOTICE, Entry.TOPIC, start),
        Accepted("b", Kind.NOTICE, Entry.BATCH, start + SECOND),
        Accepted("c", Kind.OTP, Entry.HTTP, start + SECOND),
        Accepted("lost", Kind.NOTICE, Entry.TOPIC, start + SECOND),
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
    assert result["latency_by_entry"]["bulk"]["topic"]["count"] == 1
    assert result["latency_by_entry"]["bulk"]["batch"]["count"] == 1
    assert result["latency_by_entry"]["critical"]["http"]["p50_ms"] == 100.0
    assert sorted(point[0] for point in result["points"]) == [1.0, 1.1, 4.0]


def test_outcome_of_nothing_delivered_has_no_rates() -> None:
    accepted = [Accepted("a", Kind.NOTICE, Entry.TOPIC, SECOND)]

    result = outcome(accepted, {}, planned=1)

    assert result["delivered"] == 0 and "delivered_per_s" not in result


def test_cpu_per_message_is_per_process_and_the_stack_leaves_the_bench_out() -> None:
    processes = {
        "ingest": {"cpu_s": 2.0, "peak_rss_mb": 80.0},
        "kafka": {"cpu_s": 1.0, "peak_rss_mb": 800.0},
        BENCH_CLIENT: {"cpu_s": 0.5, "peak_rss_mb": 120.0},
        BENCH_SAMPLER: {"cpu_s": 0.25, "peak_rss_mb": 0.0},
    }

    figures = cpu_per_message(processes, delivered=1000)

    assert figures["stack_cpu_ms_per_message"] == 3.0
    assert figures["cpu_ms_per_message"] == {
        "ingest": 2.0,
        "kafka": 1.0,
        BENCH_CLIENT: 0.5,
        BENCH_SAMPLER: 0.25,
    }
    assert cpu_per_message(processes, delivered=0)["stack_cpu_ms_per_message"] is None


def test_evenly_spreads_the_sample_over_accept_order() -> None:
    items = [Accepted(str(n), Kind.NOTICE, Entry.TOPIC, at_ns=100 - n) for n in range(100)]

    sample = evenly(items, 10)

    assert len(sample) == 10
    assert [item.at_ns for item in sample] == list(range(1, 101, 10))
    assert len(evenly(items[:3], 10)) == 3


def test_raw_message_has_the_size_and_the_message_id_the_sink_reads() -> None:
    raw = raw_message("raw-1", 2048)

    assert 1900 <= len(raw) <= 2048
    parsed = message_from_bytes(raw)
    assert message_id_of(parsed["Message-ID"].strip("<>")) == "raw-1"


def test_records_without_a_key_stick_to_one_partition_at_a_time() -> None:
    choose = StickyPartitioner()

    chosen = [choose(None, [0, 1, 2, 3], [0, 1, 2, 3]) for _ in range(4 * STICKY_RECORDS)]

    assert len(set(chosen[:STICKY_RECORDS])) == 1
    assert chosen[STICKY_RECORDS] != chosen[0]
    assert sorted(set(chosen)) == [0, 1, 2, 3]
    assert all(chosen.count(partition) == STICKY_RECORDS for partition in range(4))


def test_edge_goals_compare_each_door_with_its_target() -> None:
    edge = {
        "batch": {"accepted_per_s": 2500.0},
        "topic": {"accepted_per_s": 900.0},
        "single": {"offered_per_s": 300.0, "latency": {"count": 10, "p99_ms": 30.0}},
    }
    met = [met for met, _ in edge_goals(edge)]
    assert met == [True, False, False]
    assert edge_goals(None) == []


def test_search_times_are_made_absolute_and_other_parameters_kept() -> None:
    params = absolute_times({"since": -3600, "status": "bounced"})
    assert params["status"] == "bounced"
    assert params["since"].endswith("Z") and "T" in params["since"]
