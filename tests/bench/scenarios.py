"""The scenarios: mixed load, the critical lane under a bulk backlog, horizontal scale."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from libs.broker import group_id
from schemas.common import Lane
from tests.bench.load import (
    Accepted,
    Entry,
    Load,
    Planned,
    mixed_plan,
    uniform_plan,
    wait_delivered,
)
from tests.bench.measure import BENCH_CLIENT, ProcessSampler, outcome
from tests.bench.stack import BenchStack

SCALABLE = ("render", "policy-check", "router", "sender")
"""The lane services; a second instance joins each of their per-lane groups."""


async def phase(
    stack: BenchStack,
    load: Load,
    sampler: ProcessSampler,
    name: str,
    plan: list[Planned],
    rate: float | None,
) -> dict[str, Any]:
    """Offer ``plan`` at ``rate`` (None: saturation), wait for the sink, measure it all."""
    load.errors.clear()
    start = time.monotonic()
    accepted = await load.drive(plan, rate, name)
    await wait_delivered(stack, accepted, f"{name}: delivered")
    result = outcome(accepted, stack.sink.received, len(plan))
    processes = sampler.window(start, time.monotonic())
    stack_cpu = sum(f["cpu_s"] for process, f in processes.items() if process != BENCH_CLIENT)
    return {
        "name": name,
        "offered_per_s": rate,
        **result,
        "refused": dict(load.errors),
        "processes": processes,
        "stack_cpu_ms_per_message": (
            round(1000 * stack_cpu / result["delivered"], 1) if result["delivered"] else None
        ),
    }


async def mixed(
    stack: BenchStack, load: Load, sampler: ProcessSampler, count: int, rate: float
) -> list[dict[str, Any]]:
    """95 % bulk, 5 % OTPs, half through HTTP and half through the topic: at ``rate``, then
    at saturation."""
    return [
        await phase(stack, load, sampler, f"mixed @ {rate:g}/s", mixed_plan(count), rate),
        await phase(stack, load, sampler, "mixed, saturation", mixed_plan(count), None),
    ]


async def critical(
    stack: BenchStack,
    load: Load,
    sampler: ProcessSampler,
    backlog: int,
    otp_rate: float,
    window: float | None,
) -> dict[str, Any]:
    """OTPs through HTTP at a steady rate while a bulk backlog, enqueued first, drains.

    The OTPs stop when the backlog has drained, or after ``window`` seconds if that comes
    first (the bulk figures then cover what drained by then).
    """
    start = time.monotonic()
    name = f"critical under {backlog} bulk"
    bulk = await load.drive(uniform_plan(backlog, Lane.BULK, Entry.TOPIC), None, f"{name}: enqueue")
    drain = asyncio.create_task(wait_delivered(stack, bulk, f"{name}: bulk drained"))
    otps: list[Accepted] = []

    async def otp() -> None:
        if (sent := await load.send(Planned(Lane.CRITICAL, Entry.HTTP))) is not None:
            otps.append(sent)

    async with asyncio.TaskGroup() as group:
        began = time.monotonic()
        sent = 0
        while not drain.done() and (window is None or time.monotonic() - began < window):
            group.create_task(otp())
            sent += 1
            await asyncio.sleep(max(0.0, began + sent / otp_rate - time.monotonic()))
    drained = drain.done()
    drain.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await drain
    await wait_delivered(stack, otps, f"{name}: OTPs")
    origin = min((item.at_ns for item in bulk + otps), default=None)
    return {
        "name": name,
        "otp_per_s": otp_rate,
        "backlog_drained": drained,
        "otp": outcome(otps, stack.sink.received, sent, origin),
        "bulk": outcome(bulk, stack.sink.received, backlog, origin),
        "refused": dict(load.errors),
        "processes": sampler.window(start, time.monotonic()),
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
    plan = uniform_plan(count, Lane.BULK, Entry.TOPIC)
    alone = await shared(stack, service, Lane.BULK, 1)
    one = await phase(stack, load, sampler, f"scale: 1 {service}", plan, None)
    second = stack.add_instance(service, 2)
    try:
        together = await shared(stack, service, Lane.BULK, 2)
        two = await phase(stack, load, sampler, f"scale: 2 {service}", plan, None)
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
