"""The scenarios: mixed load, the critical lane under a bulk backlog, fairness between tenants,
horizontal scale."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from datetime import datetime
from itertools import repeat
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from libs.broker import group_id
from schemas.common import Lane
from tests.bench.ledger import ledger, sampled_traces, settled, spans_per_message
from tests.bench.load import Accepted, Load, wait_delivered
from tests.bench.measure import ProcessSampler, cpu_per_message, evenly, outcome
from tests.bench.plans import (
    FLOOD_KINDS,
    Entry,
    Kind,
    Planned,
    flood_plan,
    mixed_plan,
    uniform_plan,
)
from tests.bench.stack import BenchStack

SCALABLE = ("render", "policy-check", "router", "sender")
"""The lane services; a second instance joins each of their per-lane groups."""
LANE_SAMPLE = 1500
"""Messages of each kind of the flood whose lane is read back (``GET /v1/messages/{id}``): all
of them at the default flood of 3,000, so the count let into ``critical`` is exact (a sample of
200 of 1,500, with critical mail spread over the flood, was off by more than its step)."""


async def phase(
    stack: BenchStack,
    load: Load,
    sampler: ProcessSampler,
    name: str,
    plan: list[Planned],
    rate: float | None,
) -> tuple[dict[str, Any], list[Accepted]]:
    """Offer ``plan`` at ``rate`` (None: saturation), wait for the sink, measure it all; the
    figures and the messages accepted."""
    load.errors.clear()
    start = time.monotonic()
    driven = await load.drive(plan, rate, name)
    await wait_delivered(stack, driven.accepted, f"{name}: delivered")
    result = outcome(driven.accepted, stack.sink.received, driven.offered)
    processes = sampler.window(start, time.monotonic())
    figures = {
        "name": name,
        "offered_per_s": rate,
        **result,
        "refused": dict(load.errors),
        "processes": processes,
        **cpu_per_message(processes, result["delivered"]),
    }
    return figures, driven.accepted


async def mixed(
    stack: BenchStack,
    load: Load,
    sampler: ProcessSampler,
    count: int,
    rate: float,
    idle_per_s: dict[str, float] | None,
) -> list[dict[str, Any]]:
    """95 % bulk, 5 % OTPs through every door: at ``rate``, then at saturation, with the cost
    ledger of the saturation phase."""
    at_rate, _ = await phase(stack, load, sampler, f"mixed @ {rate:g}/s", mixed_plan(count), rate)
    before = await settled(stack.settings, stack.pool)
    began = time.monotonic()
    saturated, accepted = await phase(
        stack, load, sampler, "mixed, saturation", mixed_plan(count), None
    )
    after = await settled(stack.settings, stack.pool)
    delivered = [item for item in accepted if item.message_id in stack.sink.received]
    if delivered:
        saturated["ledger"] = ledger(
            after - before, len(delivered), time.monotonic() - began, idle_per_s
        )
    if stack.settings.tracing_enabled:
        traces = await sampled_traces(stack.settings.jaeger_ui_url, load, delivered)
        saturated["spans"] = spans_per_message(traces)
    return [at_rate, saturated]


async def otps_while_draining(
    stack: BenchStack,
    sampler: ProcessSampler,
    name: str,
    backlog: tuple[Load, list[Planned]],
    otps: tuple[Load, float],
    window: float | None,
) -> tuple[dict[str, Any], list[Accepted]]:
    """Enqueue a backlog as fast as it is taken, then send OTPs one request each at a steady
    rate until it has drained (or for ``window`` s, unless None or 0); the figures, and the
    backlog accepted."""
    (backlog_load, plan), (otp_load, otp_rate) = backlog, otps
    backlog_load.errors.clear()
    otp_load.errors.clear()
    start = time.monotonic()
    enqueued = await backlog_load.drive(plan, None, f"{name}: enqueue")
    drain = asyncio.create_task(
        wait_delivered(stack, enqueued.accepted, f"{name}: backlog drained")
    )
    stop = asyncio.ensure_future(asyncio.wait([drain], timeout=window or None))
    sent = await otp_load.drive(
        repeat(Planned(Kind.OTP, Entry.HTTP)), otp_rate, f"{name}: OTPs", until=stop
    )
    drained = drain.done()
    drain.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await drain
    await wait_delivered(stack, sent.accepted, f"{name}: OTPs")
    origin = min((item.at_ns for item in enqueued.accepted + sent.accepted), default=None)
    received = stack.sink.received
    figures = {
        "name": name,
        "otp_per_s": otp_rate,
        "backlog_drained": drained,
        "otp": outcome(sent.accepted, received, sent.offered, origin),
        "backlog": outcome(enqueued.accepted, received, enqueued.offered, origin),
        "refused": {**backlog_load.errors, **otp_load.errors},
        "processes": sampler.window(start, time.monotonic()),
    }
    return figures, enqueued.accepted


async def critical(
    stack: BenchStack,
    load: Load,
    sampler: ProcessSampler,
    backlog: int,
    otp_rate: float,
    window: float | None,
) -> dict[str, Any]:
    """OTPs through HTTP at a steady rate while a bulk backlog, enqueued first through the
    topic, drains."""
    figures, _ = await otps_while_draining(
        stack,
        sampler,
        f"critical under {backlog} bulk",
        (load, uniform_plan(backlog, Kind.NOTICE, Entry.TOPIC)),
        (load, otp_rate),
        window,
    )
    return figures


async def lanes_given(load: Load, accepted: list[Accepted], kind: Kind) -> dict[str, Any]:
    """The lanes the platform gave a sample of ``accepted`` messages of ``kind``."""
    of_kind = [item for item in accepted if item.kind is kind]
    sample = evenly(of_kind, LANE_SAMPLE)
    lanes: Counter[str] = Counter()
    accepted_at: list[datetime] = []
    for item in sample:
        view = await load.get(f"/v1/messages/{item.message_id}") or {}
        lanes[view.get("lane") or "unknown"] += 1
        if "accepted_at" in view:
            accepted_at.append(datetime.fromisoformat(view["accepted_at"]))
    # The lane is chosen when ingest accepts a request, which for topic records can be well
    # after the broker took them: the cap refills over the time ingest took, by its own clock.
    span = (max(accepted_at) - min(accepted_at)).total_seconds() if accepted_at else 0.0
    return {
        "accepted": len(of_kind),
        "sampled": len(sample),
        "accept_seconds": round(span, 2),
        "lanes": dict(lanes.most_common()),
    }


def critical_allowance(otp: dict[str, Any], per_second: float, burst: int) -> dict[str, Any]:
    """How many of a tenant's security messages the rate cap lets into ``critical`` over the
    time they were accepted, against how many the lane sample says got there.

    The sample is spread evenly over accept order, so its estimate is off by at most one
    sampling step (the tolerance).
    """
    sampled = otp["sampled"] or 1
    step = max(1, otp["accepted"] // sampled)
    return {
        "per_second": per_second,
        "burst": burst,
        "allowed": round(burst + per_second * otp["accept_seconds"]),
        "estimated_critical": round(otp["lanes"].get(Lane.CRITICAL.value, 0) * step),
        "tolerance": step,
    }


async def fairness(
    stack: BenchStack,
    load: Load,
    sampler: ProcessSampler,
    flood: int,
    otp_rate: float,
    window: float | None,
) -> dict[str, Any]:
    """Tenant A floods (``otp`` mail and broadcast mail asking for ``critical``), then tenant B
    sends OTPs at a steady rate while the flood drains: B's OTP latency, and A's lanes."""
    other = Load(stack, await stack.add_tenant())
    await other.start()
    try:
        figures, flooded = await otps_while_draining(
            stack,
            sampler,
            f"fairness: {flood} from tenant A",
            (load, flood_plan(flood)),
            (other, otp_rate),
            window,
        )
    finally:
        await other.close()
    if not figures["backlog_drained"]:  # the next scenario must not start behind it
        await wait_delivered(stack, flooded, "fairness: the rest of the flood")
    lanes = {kind.value: await lanes_given(load, flooded, kind) for kind in FLOOD_KINDS}
    return figures | {
        "lanes": lanes,
        "critical_allowance": critical_allowance(
            lanes[Kind.OTP.value], load.tenant.critical_per_second, load.tenant.critical_burst
        ),
    }


async def assignments(stack: BenchStack, service: str, lane: Lane) -> dict[str, list[str]]:
    """Which member of ``service``'s group for ``lane`` holds which partitions."""
    group = group_id(service, lane.value, stack.settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.settings.kafka_bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    [described] = response.to_object()["groups"]
    members: dict[str, list[str]] = {}
    for member in described["members"]:
        raw = member["member_assignment"]  # empty while the group rebalances
        held = ConsumerProtocolMemberAssignment.decode(raw).partitions() if raw else []
        members[member["member_id"]] = [
            f"{partition.topic.removeprefix(stack.settings.topic_prefix)}[{partition.partition}]"
            for partition in held
        ]
    return members


async def shared(stack: BenchStack, service: str, lane: Lane, members: int) -> dict[str, list[str]]:
    """Wait until ``members`` instances of ``service`` each hold partitions of ``lane``."""
    deadline = time.monotonic() + 90
    while True:
        held = await assignments(stack, service, lane)
        if len(held) == members and all(held.values()):
            return held
        if time.monotonic() > deadline:
            raise TimeoutError(f"{service} instances do not share {lane} partitions: {held}")
        await asyncio.sleep(1)


async def scale(
    stack: BenchStack, load: Load, sampler: ProcessSampler, service: str, count: int
) -> dict[str, Any]:
    """The same bulk burst with one instance of ``service``, then with two in one group."""
    plan = uniform_plan(count, Kind.NOTICE, Entry.TOPIC)
    alone = await shared(stack, service, Lane.BULK, 1)
    one, _ = await phase(stack, load, sampler, f"scale: 1 {service}", plan, None)
    second = stack.add_instance(service, 2)
    try:
        together = await shared(stack, service, Lane.BULK, 2)
        two, _ = await phase(stack, load, sampler, f"scale: 2 {service}", plan, None)
    finally:
        stack.supervisor.stop(second)
    return {
        "service": service,
        "group": group_id(service, Lane.BULK.value, stack.settings),
        "assignment_one": alone,
        "assignment_two": together,
        "one": one,
        "two": two,
        "speed_up": (
            round(two["delivered_per_s"] / one["delivered_per_s"], 2)
            if one.get("delivered_per_s") and two.get("delivered_per_s")
            else None
        ),
    }
