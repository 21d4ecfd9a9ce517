"""The pure parts of the queue view: lag per partition, depth and age per stage lane, sites
summed over senders, the scheduled groupings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import TopicPartition

from libs.cli import overview_lines
from libs.queue_controls import ControlKind, QueueControl, Scope
from libs.queue_views import (
    DEFAULT_GROUPING,
    QueueOverview,
    StageDepth,
    grouping,
    readers,
    site_views,
    stage_depths,
    waiting_positions,
)
from libs.settings import Settings
from schemas.common import Lane


def test_each_stage_lane_is_read_by_its_services_group() -> None:
    settings = Settings(topic_prefix="t1.")
    found = {(r.stage, r.lane): r for r in readers(settings)}
    slow = found["deliver-slow", Lane.BULK]
    assert (slow.topic, slow.group) == (
        "t1.sendarix.deliver-slow.bulk",
        "t1.sendarix-sender-slow-bulk",
    )
    assert found["policy", Lane.CRITICAL].group == "t1.sendarix-policy-check-critical"
    assert found["intake", Lane.HIGH].topic == "t1.sendarix.intake.high"


def test_waiting_counts_from_the_commit_or_the_start_and_never_deleted_records() -> None:
    a, b, c, d = (TopicPartition("t", p) for p in range(4))
    ends = {a: 10, b: 10, c: 10, d: 10}
    starts = {a: 0, b: 4, c: 0, d: 0}
    committed = {a: 7, b: 2, d: 10}
    assert waiting_positions(committed, starts, ends) == {a: (7, 10), b: (4, 10), c: (0, 10)}


def test_depth_sums_the_lane_partitions_and_age_is_the_oldest() -> None:
    settings = Settings()
    lanes = [r for r in readers(settings) if r.stage == "deliver" and r.lane is Lane.NORMAL]
    [normal] = lanes
    p0, p1 = (TopicPartition(normal.topic, p) for p in range(2))
    bulk = TopicPartition("sendarix.deliver.bulk", 0)
    now_ms = 1_000_000
    waiting = {p0: (5, 8), p1: (0, 2), bulk: (0, 100)}
    oldest = {p0: now_ms - 2500, p1: now_ms - 100, bulk: now_ms - 99_000}
    [depth] = stage_depths(lanes, waiting, oldest, now_ms)
    assert (depth.depth, depth.oldest_seconds) == (5, 2.5)
    [idle] = stage_depths(lanes, {}, {}, now_ms)
    assert (idle.depth, idle.oldest_seconds) == (0, 0)


def test_a_site_sums_its_senders_and_keeps_the_latest_limits_and_replies() -> None:
    now = datetime.now(UTC)
    snapshots = [
        {
            "site": "gmail.com",
            "lane": "normal",
            "state": "throttled",
            "in_flight": 3,
            "limits": {"connections": 2},
            "rate_per_minute": 30.0,
            "last_replies": ["421 4.7.0 slow down"],
            "updated_at": now,
        },
        {
            "site": "gmail.com",
            "lane": "bulk",
            "state": "normal",
            "in_flight": 1,
            "limits": {"connections": 5},
            "rate_per_minute": 10.0,
            "last_replies": ["250 ok"],
            "updated_at": now - timedelta(seconds=2),
        },
    ]
    waiting = [
        {"site": "gmail.com", "reason": "shaped", "count": 7},
        {"site": "relay:587", "reason": "deferred", "count": 1},
    ]
    gmail, relay = site_views(snapshots, waiting)
    assert gmail.states == {"normal": "throttled", "bulk": "normal"}
    assert (gmail.in_flight, gmail.rate_per_minute, gmail.waiting) == (4, 40.0, {"shaped": 7})
    assert gmail.limits == {"connections": 2} and gmail.last_replies == ["421 4.7.0 slow down"]
    assert (relay.site, relay.in_flight, relay.waiting, relay.states) == (
        "relay:587",
        0,
        {"deferred": 1},
        {},
    )


def test_scheduled_retries_are_grouped_by_the_dimensions_asked_for() -> None:
    assert grouping(None) == DEFAULT_GROUPING
    assert grouping("site, lane,site") == ("site", "lane")
    with pytest.raises(ValueError, match="cannot group by recipient"):
        grouping("lane,recipient")


def test_the_watched_view_lists_busy_stages_sites_and_controls() -> None:
    now = datetime.now(UTC)
    overview = QueueOverview(
        at=now,
        stages=[
            StageDepth(stage="deliver", lane=Lane.BULK, depth=12, oldest_seconds=3.5),
            StageDepth(stage="render", lane=Lane.BULK, depth=0, oldest_seconds=0),
        ],
        sites=site_views([], [{"site": "gmail.com", "reason": "shaped", "count": 2}]),
        scheduled=[],
        controls=[
            QueueControl(
                id="c1",
                kind=ControlKind.PAUSE,
                scope=Scope(lane=Lane.BULK),
                reason="maintenance",
                created_by="cli",
                created_at=now,
            )
        ],
    )
    _, deliver, site, control = overview_lines(overview)
    assert deliver.split() == ["deliver", "bulk", "12", "3.5s"]
    assert site == "site gmail.com: - in flight 0 waiting 2"
    assert control == 'pause c1 {"lane": "bulk"} maintenance'
