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

LANE_COLOURS = {
    "critical": "tab:red",
    "high": "tab:orange",
    "normal": "tab:blue",
    "bulk": "tab:gray",
}


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


def _lane(result: dict[str, Any], lane: str) -> str:
    figures = result.get("latency", {}).get(lane)
    if not figures or not figures.get("count"):
        return "-"
    return f"{figures['p50_ms']:.0f}/{figures['p95_ms']:.0f}/{figures['p99_ms']:.0f}"


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
    if critical := results.get("critical"):
        found += [
            {
                **critical["otp"],
                "name": f"{critical['name']}: OTPs",
                "offered_per_s": critical["otp_per_s"],
            },
            {**critical["bulk"], "name": f"{critical['name']}: bulk", "offered_per_s": None},
        ]
    if scaled := results.get("scale"):
        found += [scaled["one"], scaled["two"]]
    return found


def headline(results: dict[str, Any]) -> dict[str, Any] | None:
    """The phase whose rate answers "messages/s end to end": the mixed load at saturation, else
    the faster scale phase (the critical scenario's rates are set by its load, not measured)."""
    if mixed := results.get("mixed"):
        saturated: dict[str, Any] = mixed[-1]
        return saturated
    if scaled := results.get("scale"):
        one: dict[str, Any] = scaled["one"]
        two: dict[str, Any] = scaled["two"]
        return max(one, two, key=lambda phase: phase.get("delivered_per_s") or 0)
    return None


def ratios(results: dict[str, Any]) -> dict[str, float]:
    """The headline end-to-end rate as a share of each baseline."""
    best = headline(results)
    rate = best.get("delivered_per_s") if best else None
    baselines = results.get("baselines", {})
    return {
        f"pipeline_vs_raw_{name}": round(rate / baselines[name]["per_s"], 3)
        for name in ("smtp", "kafka")
        if rate and name in baselines
    }


def goals(results: dict[str, Any]) -> list[tuple[bool, str]]:
    """The issue's goals against this run's figures (reported, never asserted): met, and how."""
    found = []
    best = headline(results) or {}
    if rate := best.get("delivered_per_s"):
        found.append((rate >= 1000, f"end to end >= 1000 msg/s: {rate} msg/s ({best['name']})"))
    if share := ratios(results).get("pipeline_vs_raw_smtp"):
        found.append((share >= 0.5, f">= 50 % of the raw SMTP baseline: {share:.1%}"))
    if critical := results.get("critical"):
        p99 = critical["otp"].get("latency", {}).get("critical", {}).get("p99_ms")
        backlog = critical["bulk"]["planned"]
        drained = "" if critical["backlog_drained"] else " (measured before it had all drained)"
        found.append(
            (
                p99 is not None and p99 <= 250,
                f"critical p99 <= 250 ms while {backlog} bulk drain: {p99} ms{drained}",
            )
        )
    return found


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def text_report(results: dict[str, Any]) -> str:
    """The tables printed at the end of a run (and kept in docs/benchmarks.md)."""
    parts = []
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
    if baselines := results.get("baselines"):
        smtp, kafka = baselines["smtp"], baselines["kafka"]
        rows = [
            [
                "raw SMTP (aiosmtplib -> sink)",
                f"{smtp['per_s']}",
                f"{smtp['messages']} msgs of {smtp['message_bytes']} B over "
                f"{smtp['connections']} connections",
            ],
            [
                "raw Kafka (produce + consume)",
                f"{kafka['per_s']}",
                f"{kafka['records']} records of {kafka['record_bytes']} B, acks=all; "
                f"p99 {kafka['latency'].get('p99_ms')} ms",
            ],
        ]
        parts.append(_table(["baseline", "per s", "what"], rows))
    if found_ratios := ratios(results):
        shares = ", ".join(f"{name} = {value:.1%}" for name, value in found_ratios.items())
        best = headline(results) or {}
        parts.append(f"ratios of '{best.get('name')}' to the baselines: {shares}")
    if reached := goals(results):
        lines = [f"  {'met   ' if met else 'MISSED'} {line}" for met, line in reached]
        parts.append("goals:\n" + "\n".join(lines))
    if scaled := results.get("scale"):
        held = "\n".join(
            f"  member …{member[-12:]}: {', '.join(partitions)}"
            for member, partitions in scaled["assignment_two"].items()
        )
        parts.append(
            f"scale: two {scaled['service']} instances -> {scaled['speed_up']}x the throughput"
            f" of one; partitions of group {scaled['group']}:\n{held}"
        )
    if busiest := _busiest(results):
        name, ranked, per_message = busiest
        rows = [
            [process, f"{figures['cpu_s']:.1f}", f"{figures['peak_rss_mb']:.0f}"]
            for process, figures in ranked
        ]
        parts.append(
            f"processes during '{name}' (the stack used {per_message:.1f} ms of CPU per"
            " delivered message):\n" + _table(["process", "CPU s", "peak RSS MB"], rows)
        )
    return "\n\n".join(parts)


def _busiest(
    results: dict[str, Any],
) -> tuple[str, list[tuple[str, dict[str, float]]], float] | None:
    """CPU and memory of each process in the saturation phase, and the stack's CPU per message."""
    for result in results.get("mixed", [])[::-1]:
        if (processes := result.get("processes")) and result.get("delivered"):
            ranked = sorted(processes.items(), key=lambda item: -item[1]["cpu_s"])
            return result["name"], ranked, result["stack_cpu_ms_per_message"]
    return None


def write_json(results: dict[str, Any], folder: Path, stamp: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=1))
    return path


def draw(results: dict[str, Any], folder: Path, stamp: str) -> Path | None:
    """Latency over time per lane, one panel per phase."""
    panels = [p for p in phases(results) if p.get("points") and not p["name"].endswith(": bulk")]
    if critical := results.get("critical"):
        panels = [p for p in panels if not p["name"].startswith(critical["name"])]
        panels.append(
            {
                "name": critical["name"],
                "points": critical["bulk"].get("points", []) + critical["otp"].get("points", []),
            }
        )
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
