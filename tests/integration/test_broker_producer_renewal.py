"""A producer whose sequence numbers no longer match the broker's is replaced, not kept failing."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import OutOfOrderSequenceNumber
from faststream.kafka.publisher.producer import AioKafkaFastProducerImpl

from libs.batch import Publication
from libs.broker import make_broker
from libs.settings import Settings
from libs.topics import SEND_REQUESTS_DLQ, catalogue, public_topic

pytestmark = pytest.mark.integration


async def test_publishing_recovers_after_a_sequence_gap(settings: Settings) -> None:
    topic = public_topic(SEND_REQUESTS_DLQ, settings.topic_prefix)
    partitions = next(t.partitions for t in catalogue(settings.topic_prefix) if t.name == topic)
    broker = make_broker("renewal-test", settings)
    await broker.start()
    try:
        await broker.publish(b"{}", topic, key=b"renewal")
        holder = broker.config.broker_config.producer
        assert isinstance(holder, AioKafkaFastProducerImpl)
        wedged = holder._producer.producer
        # What batches that timed out during a broker restart leave behind: a sequence gap.
        for partition in range(partitions):
            wedged._txn_manager.increment_sequence_number(TopicPartition(topic, partition), 3)

        with pytest.raises(OutOfOrderSequenceNumber):
            await broker.publish(b"{}", topic, key=b"renewal")

        await broker.publish(b"{}", topic, key=b"renewal")
        assert holder._producer.producer is not wedged
    finally:
        await broker.stop()


async def test_urgent_sends_recover_after_a_sequence_gap(settings: Settings) -> None:
    topic = public_topic(SEND_REQUESTS_DLQ, settings.topic_prefix)
    partitions = next(t.partitions for t in catalogue(settings.topic_prefix) if t.name == topic)
    broker = make_broker("renewal-test", settings)
    await broker.start()
    urgent = Publication(None, topic, b"{}", b"renewal", [], urgent=True)
    try:
        await broker.send_confirmed([urgent])
        wedged = broker.producer(urgent=True)
        assert wedged is not broker.producer(urgent=False)
        for partition in range(partitions):
            wedged._txn_manager.increment_sequence_number(TopicPartition(topic, partition), 3)

        [outcome] = await broker.send_all([urgent])
        assert isinstance(outcome, OutOfOrderSequenceNumber)

        await broker.send_confirmed([urgent])
        assert broker.producer(urgent=True) is not wedged
    finally:
        await broker.stop()
