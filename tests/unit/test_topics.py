"""The topic catalogue: one stream per lane at every stage, public names as the contract fixes."""

from __future__ import annotations

import pytest

from libs.topics import EVENTS, SEND_REQUESTS, SEND_REQUESTS_DLQ, STAGES, catalogue, lane_topic
from schemas.common import Lane


def test_every_stage_has_a_topic_per_lane() -> None:
    names = {topic.name for topic in catalogue()}
    for stage in STAGES:
        for lane in Lane:
            assert f"sendarix.{stage}.{lane.value}" in names


def test_public_topics_keep_contract_names() -> None:
    names = {topic.name for topic in catalogue()}
    assert {"sendarix.send.requests", "sendarix.send.requests.dlq", "sendarix.events"} <= names
    assert (SEND_REQUESTS, SEND_REQUESTS_DLQ, EVENTS) == (
        "sendarix.send.requests",
        "sendarix.send.requests.dlq",
        "sendarix.events",
    )


def test_prefix_applies_to_every_topic_and_names_are_unique() -> None:
    topics = catalogue("t1.")
    assert all(topic.name.startswith("t1.sendarix.") for topic in topics)
    assert len({topic.name for topic in topics}) == len(topics)
    assert all(topic.partitions >= 1 and topic.retention_ms > 0 for topic in topics)


def test_unknown_stage_is_refused() -> None:
    with pytest.raises(ValueError):
        lane_topic("nowhere", Lane.BULK)
