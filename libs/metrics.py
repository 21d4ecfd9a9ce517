"""Prometheus metrics: every process's scrape endpoint, and the consumer runtime's metrics.

Every service process serves prometheus_client's default registry on a port of its own
(``metrics_port``; 0: none), given by the stack (``deploy.stack.pipeline.metrics_ports``). The
scrape server runs in a thread: a scrape is answered while the event loop is busy with a batch,
and costs the loop nothing. ingest's gateway can also answer ``GET /metrics``
(``metrics_public``), for a local stack; a production gateway is public, so there Prometheus
scrapes the private port.

The runtime's metrics are updated once per batch, through label children bound once per
consumer: no label look-up per record.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.exposition import choose_encoder

SECONDS_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
"""From a cached render (a millisecond) to an SMTP exchange that times out (30 s)."""

RECORDS = Counter(
    "sendarix_records",
    "Records a consumer read, by outcome: handled (its handler took them), parked (on the "
    "dead-letter topic), skipped (not for this consumer, never decoded).",
    ["service", "role", "topic", "lane", "outcome"],
)
BATCH_SECONDS = Histogram(
    "sendarix_batch_duration_seconds",
    "Time from a batch's arrival until everything it produced was acknowledged.",
    ["service", "role", "lane"],
    buckets=SECONDS_BUCKETS,
)
BATCH_RECORDS = Histogram(
    "sendarix_batch_records",
    "Records per batch a consumer handled.",
    ["service", "role", "lane"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)
CONSUMER_LAG = Gauge(
    "sendarix_consumer_lag",
    "Records of a partition not yet handled by the consumer group, after its last batch "
    "(high watermark minus the next offset to handle).",
    ["service", "role", "topic", "partition"],
)
PRODUCE_FAILURES = Counter(
    "sendarix_produce_failures",
    "Records the broker did not take (sent again, or their source parked), by error.",
    ["service", "error"],
)


class ConsumerMetrics:
    """The metrics of one consumer group of a service, their label children bound once."""

    def __init__(self, service: str, role: str, topic: str, lane: str) -> None:
        self.service, self.role, self.topic = service, role, topic
        labels = (service, role, topic, lane)
        self.handled = RECORDS.labels(*labels, "handled")
        self.parked = RECORDS.labels(*labels, "parked")
        self.skipped = RECORDS.labels(*labels, "skipped")
        self.seconds = BATCH_SECONDS.labels(service, role, lane)
        self.size = BATCH_RECORDS.labels(service, role, lane)
        self._lag: dict[int, Gauge] = {}

    def batch(self, records: int, skipped: int, parked: int, seconds: float) -> None:
        """Count one batch of ``records``: those not skipped nor parked were handled."""
        self.handled.inc(records - skipped - parked)
        if skipped:
            self.skipped.inc(skipped)
        if parked:
            self.parked.inc(parked)
        self.seconds.observe(seconds)
        self.size.observe(records)

    def lag(
        self, consumer: AIOKafkaConsumer | None, records: Sequence[ConsumerRecord[bytes, bytes]]
    ) -> None:
        """Set the lag of each partition the batch came from: the high watermark of the
        consumer's last fetch (kept in memory, no request) minus the offset after the batch's
        last record of it."""
        if consumer is None or not records:
            return
        assigned = consumer.assignment()
        last = {record.partition: record.offset for record in records}
        for partition, offset in last.items():
            where = TopicPartition(self.topic, partition)
            if where not in assigned:  # revoked while the batch was handled
                continue
            highwater: int | None = consumer.highwater(where)
            if highwater is not None:
                self._lag_of(partition).set(max(highwater - offset - 1, 0))

    def _lag_of(self, partition: int) -> Gauge:
        if (gauge := self._lag.get(partition)) is None:
            gauge = CONSUMER_LAG.labels(self.service, self.role, self.topic, str(partition))
            self._lag[partition] = gauge
        return gauge


@dataclass
class MetricsServer:
    """A running scrape endpoint (``GET /metrics``, or any path) of this process."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        """The port it listens on (the one the OS chose, when asked for 0)."""
        return self.server.server_port

    def stop(self) -> None:
        """Stop answering and release the port."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def serve_metrics(host: str, port: int) -> MetricsServer:
    """Serve the process's metrics on ``host:port`` from a thread of their own."""
    server, thread = start_http_server(port, host)
    return MetricsServer(server, thread)


def exposition(accept: str | None) -> tuple[bytes, str]:
    """The process's metrics in the format ``accept`` asks for (the text format by default),
    and its content type: what the gateway answers on ``GET /metrics``."""
    encode, content_type = choose_encoder(accept or "")
    return encode(REGISTRY), content_type
