"""The hot-path shortcuts keep the meaning of what they replace: the Java client's partition
for a key, and the W3C trace context a record carries."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.partitioner import DefaultPartitioner
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN

from libs.broker import keyed_partition
from libs.tracing import record_span, traceparent


def test_a_key_goes_to_the_partition_the_java_client_picks() -> None:
    default = DefaultPartitioner()
    for _ in range(500):
        key = str(uuid.uuid4()).encode()
        for partitions in ([0], [0, 1], [0, 1, 2, 3]):
            assert keyed_partition(key, partitions, partitions) == default(
                key, partitions, partitions
            )


def test_a_record_without_a_key_goes_to_an_available_partition() -> None:
    assert keyed_partition(None, [0, 1, 2, 3], [2]) == 2


def test_the_trace_context_of_a_record_is_read_back() -> None:
    header = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    span = record_span([("content-type", b"x"), ("traceparent", header)])
    context = span.get_span_context()
    assert (format(context.trace_id, "032x"), format(context.span_id, "016x")) == (
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
    )
    assert context.is_remote and context.trace_flags.sampled
    [(name, value)] = traceparent(trace.set_span_in_context(span))
    assert (name, value) == ("traceparent", header)


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("traceparent", b"garbage")],
        [("traceparent", b"00-00000000000000000000000000000000-b7ad6b7169203331-01")],
        [("traceparent", b"\xff\xfe")],
    ],
)
def test_no_usable_trace_context_gives_the_invalid_span(headers: list[tuple[str, bytes]]) -> None:
    assert record_span(headers) is INVALID_SPAN
