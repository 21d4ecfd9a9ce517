"""The broker's own ceiling: Kafka's ProducerPerformance and ConsumerPerformance, run from the
jars the stack runs the broker from, against the bench broker.

They show what the broker takes from a client that batches and pipelines as Kafka's own client
does — the ceiling a pipeline made of Kafka hops could approach, where the awaited aiokafka loop
shows the cost of a client that waits for every record.
"""

from __future__ import annotations

import asyncio
import re
from itertools import pairwise
from pathlib import Path
from typing import Any

from deploy.stack.tools import kafka_jars
from tests.bench.baselines import create_topic

PRODUCER_PERFORMANCE = "org.apache.kafka.tools.ProducerPerformance"
CONSUMER_PERFORMANCE = "org.apache.kafka.tools.ConsumerPerformance"
JVM_OPTIONS = ("-Xmx512m", "-XX:+UseSerialGC")
"""A small heap: the tools share the machine with the stack they measure."""
PARTITIONS = 4

_PRODUCED = re.compile(
    r"(?P<records>\d+) records sent, (?P<per_s>[\d.]+) records/sec \((?P<mb_per_s>[\d.]+) "
    r"MB/sec\), (?P<avg_ms>[\d.]+) ms avg latency, (?P<max_ms>[\d.]+) ms max latency, "
    r"(?P<p50_ms>\d+) ms 50th, (?P<p95_ms>\d+) ms 95th, (?P<p99_ms>\d+) ms 99th"
)


class ToolOutputError(RuntimeError):
    """A perf tool printed nothing we recognise."""


def parse_producer(output: str) -> dict[str, float]:
    """ProducerPerformance's summary: its last line, the only one with percentiles."""
    found = [match.groupdict() for match in _PRODUCED.finditer(output)]
    if not found:
        raise ToolOutputError(f"no summary in ProducerPerformance's output:\n{output[-2000:]}")
    return {name: float(value) for name, value in found[-1].items()}


def parse_consumer(output: str) -> dict[str, float]:
    """ConsumerPerformance's summary: a CSV header line and a line of values under it.

    ``fetch.nMsg.sec`` leaves out the group's join (``rebalance.time.ms``); it is the rate
    reported as records/s, as ``fetch.MB.sec`` is as MB/s.
    """
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for header, values in pairwise(lines):
        if header.startswith("start.time"):
            row = dict(zip(header.split(", "), values.split(", "), strict=True))
            return {
                "records": float(row["data.consumed.in.nMsg"]),
                "per_s": float(row["fetch.nMsg.sec"]),
                "mb_per_s": float(row["fetch.MB.sec"]),
                "per_s_with_join": float(row["nMsg.sec"]),
                "join_ms": float(row["rebalance.time.ms"]),
            }
    raise ToolOutputError(f"no summary in ConsumerPerformance's output:\n{output[-2000:]}")


async def run_tool(libs: Path, tool: str, *args: str) -> str:
    """Run one of Kafka's tools on its own class path; its standard output."""
    process = await asyncio.create_subprocess_exec(
        "java",
        *JVM_OPTIONS,
        "-cp",
        f"{libs}/*",
        tool,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise ToolOutputError(
            f"{tool} exited with code {process.returncode}:\n{err.decode()[-2000:]}"
        )
    return out.decode()


async def kafka_tools(bootstrap: str, prefix: str, records: int, size: int) -> dict[str, Any]:
    """Produce ``records`` of ``size`` bytes (acks=all, idempotent, as fast as the broker takes
    them), then consume them back in a group; records/s and MB/s of each."""
    topic = f"{prefix}bench.perf"
    await create_topic(bootstrap, topic, PARTITIONS)
    libs = kafka_jars()
    produced = await run_tool(
        libs,
        PRODUCER_PERFORMANCE,
        *("--topic", topic, "--num-records", str(records), "--record-size", str(size)),
        *("--throughput", "-1", "--producer-props", f"bootstrap.servers={bootstrap}"),
        *("acks=all", "enable.idempotence=true"),
    )
    consumed = await run_tool(
        libs,
        CONSUMER_PERFORMANCE,
        *("--bootstrap-server", bootstrap, "--topic", topic, "--messages", str(records)),
        *("--group", f"{prefix}bench-perf", "--timeout", "30000"),
    )
    return {
        "records": records,
        "record_bytes": size,
        "partitions": PARTITIONS,
        "producer": parse_producer(produced),
        "consumer": parse_consumer(consumed),
    }
