"""The cost ledger's arithmetic, the perf tools' output, and the goals read from a run's figures."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import TopicPartition

from tests.bench.kafka_tools import ToolOutputError, parse_consumer, parse_producer
from tests.bench.ledger import (
    CONSUMER_OFFSETS,
    Counters,
    behind,
    ledger,
    per_second,
    spans_per_message,
    sum_offsets,
    trace_spans,
)
from tests.bench.report import goals, kafka_ceiling, ratios
from tests.bench.scenarios import critical_allowance

PRODUCER_OUTPUT = """\
51713 records sent, 10342.6 records/sec (4.12 MB/sec), 1234.5 ms avg latency, 1500.0 ms max latency.
100000 records sent, 23234.2 records/sec (9.26 MB/sec), 866.2 ms avg latency, 1609.0 ms max \
latency, 810 ms 50th, 1523 ms 95th, 1585 ms 99th, 1601 ms 99.9th.
"""
CONSUMER_OUTPUT = """\
start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, \
rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
2026-11-29 09:27:50:123, 2026-11-29 09:27:51:593, 39.8636, 27.1181, 100000, 68027.2109, 691, \
779, 51.1728, 128369.7047
"""


def test_the_producer_summary_is_the_last_line_with_percentiles() -> None:
    figures = parse_producer(PRODUCER_OUTPUT)

    assert figures["records"] == 100000
    assert figures["per_s"] == 23234.2
    assert figures["mb_per_s"] == 9.26
    assert (figures["p50_ms"], figures["p99_ms"]) == (810, 1585)


def test_the_consumer_rate_leaves_the_group_join_out() -> None:
    figures = parse_consumer("log noise\n" + CONSUMER_OUTPUT)

    assert figures["per_s"] == 128369.7047
    assert figures["mb_per_s"] == 51.1728
    assert figures["per_s_with_join"] == 68027.2109
    assert figures["join_ms"] == 691


def test_output_without_a_summary_is_an_error() -> None:
    with pytest.raises(ToolOutputError):
        parse_producer("51713 records sent, 10342.6 records/sec (4.12 MB/sec).\n")
    with pytest.raises(ToolOutputError):
        parse_consumer("WARN something\n")


def test_the_ledger_is_the_difference_per_delivered_message_with_the_idle_share() -> None:
    before = Counters(100, 50, 1000, 10, 5, 0)
    after = Counters(1100, 350, 1600, 2010, 1005, 100)

    figures = ledger(after - before, delivered=100, seconds=20.0, idle_per_s={"transactions": 1.0})

    assert figures["records"] == {"total": 1000, "per_message": 10.0, "idle_per_message": 0.0}
    assert figures["offset_commits"]["per_message"] == 3.0
    assert figures["transactions"] == {"total": 600, "per_message": 6.0, "idle_per_message": 0.2}
    assert figures["rows_inserted"]["per_message"] == 20.0
    assert figures["rows_deleted"]["total"] == 100
    assert per_second(Counters(10, 0, 5, 0, 0, 0), 10.0)["transactions"] == 0.5


def test_offsets_are_summed_per_topic_and_commits_per_partition() -> None:
    ends = {
        TopicPartition("b1.sendarix.events", 0): 40,
        TopicPartition("b1.sendarix.events", 1): 60,
        TopicPartition("b0.sendarix.events", 0): 1000,
        TopicPartition(CONSUMER_OFFSETS, 7): 9,
    }

    assert sum_offsets(ends, lambda topic: topic.startswith("b1.")) == 100
    assert sum_offsets(ends, lambda topic: topic == CONSUMER_OFFSETS) == 9
    committed = {TopicPartition("b1.sendarix.events", 0): 30}
    assert behind(committed, ends) == 10
    assert behind({TopicPartition("b1.sendarix.events", 1): 60}, ends) == 0


def _span(service: str, message_id: str | None) -> dict[str, Any]:
    tags = [{"key": "sendarix.message_id", "type": "string", "value": message_id}]
    return {"processID": service, "tags": tags if message_id else []}


def test_a_trace_s_spans_are_shared_by_the_messages_in_it() -> None:
    batch = {
        "processes": {"p1": {"serviceName": "ingest"}, "p2": {"serviceName": "render"}},
        "spans": [_span("p1", None), _span("p2", "m-1"), _span("p2", "m-2")],
    }
    single = {
        "processes": {"p1": {"serviceName": "ingest"}, "p2": {"serviceName": "render"}},
        "spans": [_span("p1", None), _span("p2", "m-3"), _span("p2", "m-3")],
    }

    spans, messages, by_service = trace_spans(batch)
    figures = spans_per_message([batch, single])

    assert (spans, messages, by_service["render"]) == (3, 2, 2)
    assert figures["sampled"] == 2
    assert figures["per_message"] == 2.25  # (3 / 2 + 3 / 1) / 2
    assert figures["by_service"] == {"render": 1.5, "ingest": 0.75}
    assert spans_per_message([]) == {"sampled": 0}


def test_the_critical_allowance_is_the_burst_and_the_rate_over_the_accept_time() -> None:
    otp = {"accepted": 1000, "sampled": 100, "accept_seconds": 4.0, "lanes": {"critical": 40}}

    allowance = critical_allowance(otp, per_second=50.0, burst=200)

    assert allowance["allowed"] == 400
    assert allowance["estimated_critical"] == 400
    assert allowance["tolerance"] == 10


def _results() -> dict[str, Any]:
    return {
        "baselines": {
            "smtp": {"per_s": 2000.0},
            "kafka_awaited": {"per_s": 4000.0},
            "kafka_tools": {"producer": {"per_s": 20000.0}, "consumer": {"per_s": 100000.0}},
        },
        "mixed": [
            {"name": "mixed @ 100/s", "delivered_per_s": 100.0},
            {
                "name": "mixed, saturation",
                "delivered_per_s": 400.0,
                "stack_cpu_ms_per_message": 4.0,
                "cpu_ms_per_message": {"bench-client": 0.2},
            },
        ],
    }


def test_the_kafka_ceiling_is_the_slower_of_the_perf_tools() -> None:
    results = _results()

    assert kafka_ceiling(results["baselines"]) == 20000.0
    assert ratios(results) == {
        "pipeline_vs_raw_smtp": 0.2,
        "pipeline_vs_kafka_ceiling": 0.02,
        "pipeline_vs_kafka_awaited": 0.1,
    }


def test_goals_read_the_saturation_phase() -> None:
    reached = dict((line.split(":")[0], met) for met, line in goals(_results()))

    assert reached["end to end >= 340 msg/s (floor)"] is True
    assert reached["end to end >= 1000 msg/s (goal)"] is False
    assert reached["stack CPU <= 5 ms per delivered message (floor)"] is True
    assert reached["stack CPU <= 2 ms per delivered message (goal)"] is False
    assert reached["load generator <= 0.3 ms CPU per message"] is True
