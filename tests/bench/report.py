"""The benchmark's outputs: the machine it ran on, a table on the terminal, JSON and a PNG."""

from __future__ import annotations

import json
import os
import platform
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import psutil

from deploy.stack.tools import KAFKA_POM
from tests.bench.analytics import analytics_goals, analytics_report
from tests.bench.delivery import delivery_goals, delivery_report
from tests.bench.measure import BENCH_CLIENT
from tests.bench.policy import policy_goals, policy_report
from tests.bench.render import render_goals, render_report
from tests.bench.webhooks import webhooks_goals, webhooks_report

LANE_COLOURS = {
    "critical": "tab:red",
    "high": "tab:orange",
    "normal": "tab:blue",
    "bulk": "tab:gray",
}

FLOOR_PER_S = 340
GOAL_PER_S = 1000
CPU_FLOOR_MS = 5.0
CPU_GOAL_MS = 2.0
OTP_P99_MS = 250
DRAIN_PER_S = 300
CLIENT_MS = 0.3
BATCH_ACCEPT_PER_S = 2000
TOPIC_ACCEPT_PER_S = 10_000
SINGLE_P99_MS = 25
"""The issue's figures: end-to-end msg/s (floor, goal), the stack's CPU per delivered message
(floor, goal), OTP p99 while a backlog drains at least so fast, and the load generator's own
CPU per message (above it, the harness would be measuring itself)."""
DRAINS = ("critical", "fairness")
"""The scenarios that send OTPs while a backlog drains."""


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    kafka = re.search(r"<kafka.version>([^<]+)</kafka.version>", KAFKA_POM.read_text())
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model.group(1).strip() if model else platform.processor(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "kafka": kafka.group(1) if kafka else None,
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }


def _percentiles(figures: dict[str, Any] | None) -> str:
    if not figures or not figures.get("count"):
        return "-"
    return f"{figures['p50_ms']:.0f}/{figures['p95_ms']:.0f}/{figures['p99_ms']:.0f}"


def _lane(result: dict[str, Any], lane: str) -> str:
    return _percentiles(result.get("latency", {}).get(lane))


def _doors(mixed: list[dict[str, Any]]) -> str:
    """Latency per lane and way in, for the mixed phases."""
    rows = [
        [phase["name"], lane, entry, str(figures["count"]), _percentiles(figures)]
        for phase in mixed
        for lane, entries in phase.get("latency_by_entry", {}).items()
        for entry, figures in entries.items()
    ]
    return _table(["phase", "lane", "way in", "delivered", "p50/95/99 ms"], rows)


def _row(result: dict[str, Any]) -> list[str]:
    offered = result.get("offered_per_s")
    return [
        result["name"],
        f"{offered:g}" if offered else "max",
        str(result.get("accepted_per_s") or "-"),
        str(result.get("delivered_per_s") or "-"),
        f"{result.get('delivered', 0)}/{result.get('accepted', 0)}",
        _lane(result, "critical"),
        _lane(result, "bulk"),
    ]


def phases(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every measured phase that has a throughput, in run order."""
    found: list[dict[str, Any]] = list(results.get("mixed", []))
    if scaled := results.get("scale"):
        found += [scaled["one"], scaled["two"]]
    for key in DRAINS:
        if drain := results.get(key):
            found += [
                {
                    **drain["otp"],
                    "name": f"{drain['name']}: OTPs",
                    "offered_per_s": drain["otp_per_s"],
                },
                {**drain["backlog"], "name": f"{drain['name']}: backlog", "offered_per_s": None},
            ]
    return found


def headline(results: dict[str, Any]) -> dict[str, Any] | None:
    """The phase whose rate answers "messages/s end to end": the mixed load at saturation, else
    the faster scale phase (the drain scenarios' rates are set by their load, not measured)."""
    if mixed := results.get("mixed"):
        saturated: dict[str, Any] = mixed[-1]
        return saturated
    if scaled := results.get("scale"):
        one: dict[str, Any] = scaled["one"]
        two: dict[str, Any] = scaled["two"]
        return max(one, two, key=lambda phase: phase.get("delivered_per_s") or 0)
    return None


def kafka_ceiling(baselines: dict[str, Any]) -> float | None:
    """Records/s the broker moves from a pipelining client to a consumer: the slower of Kafka's
    own producer and consumer perf tools."""
    if tools := baselines.get("kafka_tools"):
        return float(min(tools["producer"]["per_s"], tools["consumer"]["per_s"]))
    return None


def ratios(results: dict[str, Any]) -> dict[str, float]:
    """The headline end-to-end rate as a share of each baseline."""
    best = headline(results)
    rate = best.get("delivered_per_s") if best else None
    baselines = results.get("baselines", {})
    ceilings = {
        "raw_smtp": baselines.get("smtp", {}).get("per_s"),
        "kafka_ceiling": kafka_ceiling(baselines),
        "kafka_awaited": baselines.get("kafka_awaited", {}).get("per_s"),
    }
    return {
        f"pipeline_vs_{name}": round(rate / ceiling, 4)
        for name, ceiling in ceilings.items()
        if rate and ceiling
    }


def goals(results: dict[str, Any]) -> list[tuple[bool, str]]:
    """The issue's goals against this run's figures (reported, never asserted): met, and how."""
    found = []
    best = headline(results) or {}
    if rate := best.get("delivered_per_s"):
        for target, what in ((FLOOR_PER_S, "floor"), (GOAL_PER_S, "goal")):
            found.append(
                (rate >= target, f"end to end >= {target} msg/s ({what}): {rate} ({best['name']})")
            )
    if (cpu := best.get("stack_cpu_ms_per_message")) is not None:
        for ceiling, what in ((CPU_FLOOR_MS, "floor"), (CPU_GOAL_MS, "goal")):
            found.append(
                (
                    cpu <= ceiling,
                    f"stack CPU <= {ceiling:g} ms per delivered message ({what}): {cpu}",
                )
            )
    if critical := results.get("critical"):
        p99 = critical["otp"].get("latency", {}).get("critical", {}).get("p99_ms")
        drained_per_s = critical["backlog"].get("delivered_per_s")
        backlog = critical["backlog"]["planned"]
        cut = "" if critical["backlog_drained"] else " (measured before it had all drained)"
        found += [
            (
                p99 is not None and p99 <= OTP_P99_MS,
                f"OTP p99 <= {OTP_P99_MS} ms while {backlog} bulk drain: {p99} ms{cut}",
            ),
            (
                drained_per_s is not None and drained_per_s >= DRAIN_PER_S,
                f"bulk drains >= {DRAIN_PER_S}/s under the OTPs: {drained_per_s}/s",
            ),
        ]
    if fair := results.get("fairness"):
        p99 = fair["otp"].get("latency", {}).get("critical", {}).get("p99_ms")
        broadcast = fair["lanes"]["broadcast"]
        in_bulk = broadcast["lanes"].get("bulk", 0)
        allowance = fair["critical_allowance"]
        found += [
            (
                p99 is not None and p99 <= OTP_P99_MS,
                f"tenant B's OTP p99 <= {OTP_P99_MS} ms while tenant A floods: {p99} ms",
            ),
            (
                in_bulk == broadcast["sampled"],
                f"broadcast asking for critical stays bulk: {in_bulk}/{broadcast['sampled']}"
                " sampled",
            ),
            (
                allowance["estimated_critical"] <= allowance["allowed"] + allowance["tolerance"],
                f"tenant A's otp mail enters critical at most at its rate: about"
                f" {allowance['estimated_critical']} (± {allowance['tolerance']}), allowed"
                f" {allowance['allowed']}",
            ),
        ]
    found += edge_goals(results.get("edge"))
    found += policy_goals(results.get("policy"))
    found += render_goals(results.get("render"))
    found += analytics_goals(results.get("analytics"))
    found += webhooks_goals(results.get("webhooks"))
    found += delivery_goals(results.get("delivery"))
    client = best.get("cpu_ms_per_message", {}).get(BENCH_CLIENT)
    if client is not None:
        found.append(
            (client <= CLIENT_MS, f"load generator <= {CLIENT_MS} ms CPU per message: {client}")
        )
    return found


def edge_goals(edge: dict[str, Any] | None) -> list[tuple[bool, str]]:
    """The edge's goals: accept rate of the batch endpoint and of the topic, single-send p99."""
    if not edge:
        return []
    batch, topic = edge["batch"]["accepted_per_s"], edge["topic"]["accepted_per_s"]
    single = edge["single"]
    p99 = single["latency"].get("p99_ms")
    return [
        (batch >= BATCH_ACCEPT_PER_S, f"batch endpoint accepts >= {BATCH_ACCEPT_PER_S}/s: {batch}"),
        (topic >= TOPIC_ACCEPT_PER_S, f"topic intake accepts >= {TOPIC_ACCEPT_PER_S}/s: {topic}"),
        (
            p99 is not None and p99 <= SINGLE_P99_MS,
            f"single send p99 <= {SINGLE_P99_MS} ms at {single['offered_per_s']:g}/s: {p99} ms",
        ),
    ]


def _edge(edge: dict[str, Any]) -> str:
    """The edge scenario's figures: each door, single sends, searches."""
    single = edge["single"]
    dkim = edge["dkim"]
    lines = [
        f"DKIM signing (RSA 2048, {dkim['bytes']}-byte message, in one process):"
        f" {dkim['cpu_ms_per_message']} ms of CPU per message",
        f"edge: batch endpoint {edge['batch']['accepted_per_s']} accepted/s"
        f" ({edge['batch']['accepted']} in {edge['batch']['seconds']} s);"
        f" topic {edge['topic']['accepted_per_s']} accepted/s ({edge['topic']['accepted']} in"
        f" {edge['topic']['seconds']} s, all acknowledged by the broker after"
        f" {edge['topic']['acknowledged_by_broker_s']} s); single sends at"
        f" {single['offered_per_s']:g}/s: {_percentiles(single['latency'])} ms"
        f" ({single['answered_202']}/{single['requests']} answered 202)",
    ]
    if search := edge.get("search"):
        rows = [
            [name, str(query["found_on_page"]), _percentiles(query["latency"])]
            for name, query in search["queries"].items()
        ]
        lines.append(
            f"search over {search['rows']:,} messages of one tenant (seeded in"
            f" {search['seed_s']} s):\n" + _table(["query", "found on page", "p50/95/99 ms"], rows)
        )
    return "\n".join(lines)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def _baselines(baselines: dict[str, Any]) -> str:
    smtp, awaited = baselines["smtp"], baselines["kafka_awaited"]
    producer, consumer = baselines["kafka_tools"]["producer"], baselines["kafka_tools"]["consumer"]
    records, size = baselines["kafka_tools"]["records"], baselines["kafka_tools"]["record_bytes"]
    rows = [
        [
            "raw SMTP (aiosmtplib -> sink)",
            f"{smtp['per_s']}",
            f"{smtp['mb_per_s']}",
            f"{smtp['messages']} msgs of {smtp['message_bytes']} B over"
            f" {smtp['connections']} connections",
        ],
        [
            f"Kafka, aiokafka, each send awaited ({awaited['publishers']} publishers)",
            f"{awaited['per_s']}",
            f"{awaited['mb_per_s']}",
            f"{awaited['records']} records of {awaited['record_bytes']} B produced and consumed,"
            f" acks=all; p99 {awaited['latency'].get('p99_ms')} ms",
        ],
        [
            "Kafka ProducerPerformance",
            f"{producer['per_s']:.1f}",
            f"{producer['mb_per_s']:.2f}",
            f"{records} records of {size} B, acks=all, idempotent; p99 {producer['p99_ms']:.0f} ms",
        ],
        [
            "Kafka ConsumerPerformance",
            f"{consumer['per_s']:.1f}",
            f"{consumer['mb_per_s']:.2f}",
            f"the same records, in a group (its {consumer['join_ms']:.0f} ms join not counted)",
        ],
    ]
    return _table(["baseline", "per s", "MB/s", "what"], rows)


def _ledger(phase: dict[str, Any]) -> str:
    names = {
        "records": "records produced",
        "offset_commits": "offset commits (partition-commits)",
        "transactions": "database transactions",
        "rows_inserted": "rows inserted",
        "rows_updated": "rows updated",
        "rows_deleted": "rows deleted",
    }
    rows = [
        [names[name], f"{item['total']}", f"{item['per_message']}", f"{item['idle_per_message']}"]
        for name, item in phase["ledger"].items()
    ]
    text = f"cost per delivered message, '{phase['name']}' ({phase['delivered']} delivered):\n"
    text += _table(["item", "total", "per message", "of which idle stack"], rows)
    if (spans := phase.get("spans")) and spans.get("sampled"):
        services = ", ".join(f"{name} {count}" for name, count in spans["by_service"].items())
        text += (
            f"\nspans per message: {spans['per_message']} ({spans['sampled']} sampled traces;"
            f" {services})"
        )
    return text


def _fairness(fair: dict[str, Any]) -> str:
    rows = [
        [
            kind,
            str(seen["accepted"]),
            str(seen["sampled"]),
            ", ".join(f"{lane} {count}" for lane, count in seen["lanes"].items()),
        ]
        for kind, seen in fair["lanes"].items()
    ]
    allowance = fair["critical_allowance"]
    seconds = fair["lanes"]["otp"]["accept_seconds"]
    return (
        f"{fair['name']}: tenant B's OTPs at {fair['otp_per_s']:g}/s, p50/95/99"
        f" {_lane(fair['otp'], 'critical')} ms; the lanes tenant A's messages got"
        " (GET /v1/messages/{id} of a sample):\n"
        + _table(["kind", "accepted", "sampled", "lanes"], rows)
        + f"\ncritical allowance: {allowance['burst']} + {allowance['per_second']:g}/s x"
        f" {seconds} s = {allowance['allowed']}; estimated in critical:"
        f" {allowance['estimated_critical']} (± {allowance['tolerance']})"
    )


def text_report(results: dict[str, Any]) -> str:
    """The tables printed at the end of a run (and kept in docs/benchmarks.md)."""
    parts = []
    best = headline(results) or {}
    if found := phases(results):
        header = [
            "phase",
            "offered/s",
            "accepted/s",
            "delivered/s",
            "delivered",
            "critical p50/95/99 ms",
            "bulk p50/95/99 ms",
        ]
        parts.append(_table(header, [_row(result) for result in found]))
    if mixed := results.get("mixed"):
        parts.append(_doors(mixed))
    if baselines := results.get("baselines"):
        parts.append(_baselines(baselines))
    if edge := results.get("edge"):
        parts.append(_edge(edge))
    if figures := results.get("policy"):
        parts.append(policy_report(figures))
    if figures := results.get("render"):
        parts.append(render_report(figures))
    if figures := results.get("analytics"):
        parts.append(analytics_report(figures))
    if hooks := results.get("webhooks"):
        parts.append(webhooks_report(hooks))
    if figures := results.get("delivery"):
        parts.append(delivery_report(figures))
    if found_ratios := ratios(results):
        shares = ", ".join(f"{name} = {value:.1%}" for name, value in found_ratios.items())
        parts.append(f"ratios of '{best.get('name')}' to the baselines: {shares}")
    if reached := goals(results):
        lines = [f"  {'met   ' if met else 'MISSED'} {line}" for met, line in reached]
        parts.append("goals:\n" + "\n".join(lines))
    if best.get("ledger"):
        parts.append(_ledger(best))
    if fair := results.get("fairness"):
        parts.append(_fairness(fair))
    if scaled := results.get("scale"):
        held = "\n".join(
            f"  member …{member[-12:]}: {', '.join(partitions)}"
            for member, partitions in scaled["assignment_two"].items()
        )
        parts.append(
            f"scale: two {scaled['service']} instances -> {scaled['speed_up']}x the throughput"
            f" of one; partitions of group {scaled['group']}:\n{held}"
        )
    if best.get("processes") and best.get("delivered"):
        ranked = sorted(best["processes"].items(), key=lambda item: -item[1]["cpu_s"])
        per_message = best["cpu_ms_per_message"]
        rows = [
            [
                process,
                f"{figures['cpu_s']:.1f}",
                f"{per_message[process]:.2f}",
                f"{figures['peak_rss_mb']:.0f}",
            ]
            for process, figures in ranked
        ]
        parts.append(
            f"processes during '{best['name']}' (the stack, without the load generator and the"
            f" sink, used {best['stack_cpu_ms_per_message']} ms of CPU per delivered message):\n"
            + _table(["process", "CPU s", "CPU ms per delivered msg", "peak RSS MB"], rows)
        )
    return "\n\n".join(parts)


def write_json(results: dict[str, Any], folder: Path, stamp: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=1))
    return path


def _panels(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One panel per phase; a drain scenario's in one panel (the critical scenario's backlog
    with its OTPs; the fairness scenario's tenant B OTPs alone, as A's flood is not in the lane
    its category asks for)."""
    panels = [p for p in results.get("mixed", []) if p.get("points")]
    if scaled := results.get("scale"):
        panels += [p for p in (scaled["one"], scaled["two"]) if p.get("points")]
    if critical := results.get("critical"):
        points = critical["backlog"].get("points", []) + critical["otp"].get("points", [])
        panels.append({"name": critical["name"], "points": points})
    if fair := results.get("fairness"):
        panels.append(
            {"name": f"{fair['name']}: tenant B's OTPs", "points": fair["otp"].get("points", [])}
        )
    return [panel for panel in panels if panel["points"]]


def draw(results: dict[str, Any], folder: Path, stamp: str) -> Path | None:
    """Latency over time per lane, one panel per phase."""
    panels = _panels(results)
    if not panels:
        return None
    figure, axes = plt.subplots(len(panels), 1, figsize=(11, 3.2 * len(panels)), squeeze=False)
    for axis, panel in zip(axes[:, 0], panels, strict=True):
        for lane, colour in LANE_COLOURS.items():
            points = [(at, latency) for at, latency, of in panel["points"] if of == lane]
            if points:
                xs, ys = zip(*points, strict=True)
                size = 4 if lane == "bulk" else 10
                axis.scatter(
                    xs,
                    ys,
                    s=size,
                    c=colour,
                    label=f"{lane} ({len(points)})",
                    alpha=0.6,
                    linewidths=0,
                )
        axis.axhline(250, color="tab:red", linestyle=":", linewidth=1)
        axis.set_yscale("log")
        axis.set_title(panel["name"], loc="left", fontsize=10)
        axis.set_ylabel("accept → 250 (ms)")
        axis.grid(True, which="both", alpha=0.25)
        axis.legend(loc="upper left", fontsize=8, markerscale=2)
    axes[-1, 0].set_xlabel(
        "when the 250 arrived, seconds after the phase's first accept (dotted: 250 ms)"
    )
    figure.tight_layout()
    path = folder / f"latency-{stamp}.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def stamp(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ")
