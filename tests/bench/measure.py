"""From accept times and sink arrivals to figures: throughput, latency percentiles, CPU, memory."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import psutil

from tests.bench.load import Accepted
from tests.bench.sink import SINK

BENCH_CLIENT = "bench-client"
"""This process: the load generator, sampled without its children (the stack it started) and
without the sampler."""
BENCH_SAMPLER = "bench-sampler"
"""The sampler itself, a thread of this process: its reading of the process table is not load."""


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in 0..1) of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def latency_summary(latencies_ms: list[float]) -> dict[str, float | int]:
    """Count and p50/p95/p99/max of latencies in ms."""
    if not latencies_ms:
        return {"count": 0}
    return {
        "count": len(latencies_ms),
        "p50_ms": round(percentile(latencies_ms, 0.50), 1),
        "p95_ms": round(percentile(latencies_ms, 0.95), 1),
        "p99_ms": round(percentile(latencies_ms, 0.99), 1),
        "max_ms": round(max(latencies_ms), 1),
    }


def outcome(
    accepted: list[Accepted], received: dict[str, int], planned: int, origin_ns: int | None = None
) -> dict[str, Any]:
    """What became of ``accepted``: throughput from first accept to last 250, latency per lane
    and per lane and way in (an OTP's latency, whichever door it came through).

    ``points`` keeps (seconds from ``origin_ns``, by default the first accept, to the 250,
    latency ms, lane) for the plot.
    """
    delivered = [
        (item, received[item.message_id]) for item in accepted if item.message_id in received
    ]
    result: dict[str, Any] = {
        "planned": planned,
        "accepted": len(accepted),
        "delivered": len(delivered),
        "missing": len(accepted) - len(delivered),
    }
    if not delivered:
        return result
    first_ns = min(item.at_ns for item in accepted)
    last_ns = max(at for _, at in delivered)
    accept_span = (max(item.at_ns for item in accepted) - first_ns) / 1e9
    seconds = (last_ns - first_ns) / 1e9
    latencies = [((at - item.at_ns) / 1e6, at, item) for item, at in delivered]
    by_lane: dict[str, list[float]] = {}
    by_entry: dict[str, dict[str, list[float]]] = {}
    for latency, _, item in latencies:
        by_lane.setdefault(item.lane.value, []).append(latency)
        by_entry.setdefault(item.lane.value, {}).setdefault(item.entry.value, []).append(latency)
    result |= {
        "seconds": round(seconds, 2),
        "accepted_per_s": round(len(accepted) / accept_span, 1) if accept_span > 0 else None,
        "delivered_per_s": round(len(delivered) / seconds, 1) if seconds > 0 else None,
        "latency": {lane: latency_summary(values) for lane, values in sorted(by_lane.items())},
        "latency_by_entry": {
            lane: {entry: latency_summary(values) for entry, values in sorted(entries.items())}
            for lane, entries in sorted(by_entry.items())
        },
        "points": [
            [round((at - (origin_ns or first_ns)) / 1e9, 3), round(latency, 1), item.lane.value]
            for latency, at, item in latencies
        ],
    }
    return result


NOT_THE_STACK = frozenset({BENCH_CLIENT, BENCH_SAMPLER, SINK})
"""The load generator, its sampler and the sink (which stands in for the recipients' mail
servers) are measured but are not Sendarix."""


def cpu_per_message(processes: dict[str, dict[str, float]], delivered: int) -> dict[str, Any]:
    """CPU ms per delivered message: of each process, and of the stack (every process of
    Sendarix and its infrastructure)."""
    if not delivered:
        return {"stack_cpu_ms_per_message": None, "cpu_ms_per_message": {}}
    stack = sum(f["cpu_s"] for process, f in processes.items() if process not in NOT_THE_STACK)
    return {
        "stack_cpu_ms_per_message": round(1000 * stack / delivered, 2),
        "cpu_ms_per_message": {
            process: round(1000 * f["cpu_s"] / delivered, 3) for process, f in processes.items()
        },
    }


def evenly(items: list[Accepted], count: int) -> list[Accepted]:
    """``count`` of ``items`` (or all if fewer), spread evenly over them in accept order."""
    ordered = sorted(items, key=lambda item: item.at_ns)
    step = max(1, len(ordered) // count)
    return ordered[::step][:count]


def listener_pids(ports: dict[str, int]) -> dict[str, int]:
    """The process listening on each port (infrastructure this run did not start)."""
    found: dict[str, int] = {}
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return found
    for name, port in ports.items():
        for connection in connections:
            if (
                connection.status == psutil.CONN_LISTEN
                and connection.laddr
                and connection.laddr.port == port
                and connection.pid
            ):
                found[name] = connection.pid
                break
    return found


def _children_by_parent() -> dict[int, list[int]]:
    """Every process's children, from one pass over the process table (psutil's
    ``children()`` makes a pass per call, which sampling a dozen processes would repeat)."""
    found: dict[int, list[int]] = {}
    for process in psutil.process_iter(["ppid"]):
        found.setdefault(process.info["ppid"], []).append(process.pid)
    return found


def _usage(pid: int, children: dict[int, list[int]]) -> tuple[float, int]:
    """CPU seconds (user + system) and RSS bytes of a process and, if ``children`` has them,
    its descendants (PostgreSQL serves each connection from a child): the live ones, and
    those that ended (their time stays with the parent that reaped them; without it, a
    connection closing within a phase took its CPU time out of the phase's figure)."""
    cpu, rss = 0.0, 0
    tree = [pid]
    for member in tree:
        tree += children.get(member, [])
        try:
            process = psutil.Process(member)
            times = process.cpu_times()
            cpu += times.user + times.system
            if children:
                cpu += times.children_user + times.children_system
            rss += process.memory_info().rss
        except psutil.NoSuchProcess:
            if member == pid:
                raise
    return cpu, rss


@dataclass
class ProcessSampler:
    """Samples CPU time and RSS of named processes (and their children) every ``every`` s."""

    processes: Callable[[], dict[str, int]]
    every: float = 0.5
    samples: list[tuple[float, dict[str, tuple[float, int]]]] = field(default_factory=list)
    own_cpu: float = 0.0
    """CPU seconds the sampling itself used so far."""

    def sample(self) -> None:
        began = time.thread_time()
        usage: dict[str, tuple[float, int]] = {}
        children = _children_by_parent()
        for name, pid in self.processes().items():
            try:
                usage[name] = _usage(pid, children)
            except psutil.NoSuchProcess:
                continue
        cpu, rss = _usage(os.getpid(), {})
        self.own_cpu += time.thread_time() - began
        usage[BENCH_CLIENT] = (cpu - self.own_cpu, rss)
        usage[BENCH_SAMPLER] = (self.own_cpu, 0)
        self.samples.append((time.monotonic(), usage))

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(self.every)

    def window(self, start: float, end: float) -> dict[str, dict[str, float]]:
        """CPU seconds used and peak RSS (MB) of each process between two monotonic times."""
        inside = [usage for at, usage in self.samples if start <= at <= end]
        if len(inside) < 2:
            return {}
        names: Iterable[str] = sorted({name for usage in inside for name in usage})
        figures: dict[str, dict[str, float]] = {}
        for name in names:
            seen = [usage[name] for usage in inside if name in usage]
            figures[name] = {
                "cpu_s": round(max(0.0, seen[-1][0] - seen[0][0]), 2),
                "peak_rss_mb": round(max(rss for _, rss in seen) / 2**20, 1),
            }
        return figures
