"""``python -m tests.bench``: run the benchmark scenarios on the bench stack and report them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from deploy.stack.infra import infra_ports
from deploy.stack.profiles import BENCH
from libs.settings import REPO_ROOT, Settings
from tests.bench import report
from tests.bench.analytics import analytics
from tests.bench.baselines import kafka_awaited, smtp_blast
from tests.bench.delivery import delivery
from tests.bench.edge import edge
from tests.bench.kafka_tools import kafka_tools
from tests.bench.ledger import per_second, read_counters
from tests.bench.load import Load
from tests.bench.measure import ProcessSampler, listener_pids
from tests.bench.plans import Kind
from tests.bench.policy import policy
from tests.bench.render import render_bench
from tests.bench.scenarios import SCALABLE, critical, fairness, mixed, scale
from tests.bench.sink import Sink
from tests.bench.stack import bench_stack
from tests.bench.webhooks import webhooks

SCENARIOS = (
    "all",
    "baselines",
    "edge",
    "policy",
    "analytics",
    "webhooks",
    "delivery",
    "mixed",
    "scale",
    "fairness",
    "critical",
    "render",
)
IDLE_SECONDS = 10.0
"""How long the idle stack's own CPU use and counters are sampled, before any load (long
enough for PostgreSQL's statistics, which an idle backend reports within 10 s)."""
SMTP_MESSAGE_BYTES = 2048
"""About the size of a rendered bulk notice (HTML and text parts) on the wire."""


async def run(options: dict[str, Any]) -> dict[str, Any]:
    """Bring the stack up, run the chosen scenarios, return every figure."""
    chosen = options["scenario"]
    results: dict[str, Any] = {}
    async with bench_stack(
        options["tracing"], options["lane_split"], services=chosen != "baselines"
    ) as stack:
        reused = {
            name: port for name, port in infra_ports(BENCH).items() if name not in stack.infra
        }
        infra = listener_pids(reused)
        sampler = ProcessSampler(lambda: {**infra, **stack.running()})
        sampling = asyncio.create_task(sampler.run())
        load = Load(stack, stack.tenant)
        await load.start()
        try:
            quiet = time.monotonic()
            counters = await read_counters(stack.settings, stack.pool)
            await asyncio.sleep(IDLE_SECONDS)
            idle = await read_counters(stack.settings, stack.pool) - counters
            results["idle"] = {
                "seconds": IDLE_SECONDS,
                "processes": sampler.window(quiet, time.monotonic()),
                "counters_per_s": per_second(idle, time.monotonic() - quiet),
            }
            if chosen in ("all", "baselines"):
                results["baselines"] = await baselines(stack.settings, stack.sink, load, options)
            if chosen in ("all", "edge"):
                results["edge"] = await edge(
                    stack,
                    load,
                    options["edge_batches"],
                    options["edge_records"],
                    options["single_rate"],
                    options["search_rows"],
                )
            if chosen in ("all", "policy"):
                results["policy"] = await policy(
                    stack, options["policy_suppressions"], options["policy_decisions"]
                )
            if chosen in ("all", "analytics"):
                results["analytics"] = await analytics(
                    stack.settings, stack.pool, options["analytics_events"]
                )
            if chosen in ("all", "webhooks"):
                results["webhooks"] = await webhooks(stack, options["webhook_events"])
            if chosen in ("all", "delivery"):
                results["delivery"] = await delivery(
                    stack,
                    sampler,
                    options["delivery_jobs"],
                    options["delivery_rate"],
                    options["delivery_seconds"],
                )
            if chosen in ("all", "mixed"):
                results["mixed"] = await mixed(
                    stack,
                    load,
                    sampler,
                    options["messages"],
                    options["rate"],
                    results["idle"]["counters_per_s"],
                )
            if chosen in ("all", "scale"):
                results["scale"] = await scale(
                    stack, load, sampler, options["scale_service"], options["messages"]
                )
            if chosen in ("all", "fairness"):
                results["fairness"] = await fairness(
                    stack, load, sampler, options["flood"], options["otp_rate"], options["window"]
                )
            # last: a backlog cut short by --window is left draining when the run ends
            if chosen in ("all", "critical"):
                results["critical"] = await critical(
                    stack,
                    load,
                    sampler,
                    options["backlog"],
                    options["otp_rate"],
                    options["window"],
                )
            results["duplicates_at_sink"] = sum(
                1 for copies in stack.sink.copies.values() if copies > 1
            )
        finally:
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
            await load.close()
    return results


async def baselines(
    settings: Settings, sink: Sink, load: Load, options: dict[str, Any]
) -> dict[str, Any]:
    """Raw SMTP to the sink, an awaited aiokafka loop and Kafka's own perf tools, with records
    of a bulk send request's size."""
    size = len(load.record(Kind.NOTICE))
    count = options["baseline_messages"]
    bootstrap, prefix = settings.kafka_bootstrap, settings.topic_prefix
    return {
        "smtp": await smtp_blast(sink, count, SMTP_MESSAGE_BYTES),
        "kafka_awaited": await kafka_awaited(bootstrap, prefix, count, size),
        "kafka_tools": await kafka_tools(bootstrap, prefix, options["perf_records"], size),
    }


@click.command()
@click.option("--scenario", type=click.Choice(SCENARIOS), default="all", show_default=True)
@click.option(
    "--messages",
    type=int,
    default=5000,
    show_default=True,
    help="Messages per phase of the mixed and scale scenarios.",
)
@click.option(
    "--baseline-messages",
    type=int,
    default=10_000,
    show_default=True,
    help="Messages (records) of the raw SMTP and the awaited Kafka baselines.",
)
@click.option(
    "--perf-records",
    type=int,
    default=100_000,
    show_default=True,
    help="Records of Kafka's ProducerPerformance and ConsumerPerformance baselines.",
)
@click.option(
    "--edge-batches",
    type=int,
    default=20,
    show_default=True,
    help="Full batches (500 messages each) of the edge scenario's batch-endpoint phase.",
)
@click.option(
    "--edge-records",
    type=int,
    default=20_000,
    show_default=True,
    help="Records the edge scenario produces to sendarix.send.requests.",
)
@click.option(
    "--single-rate",
    type=float,
    default=300.0,
    show_default=True,
    help="Single POST /v1/messages requests per second of the edge scenario (for 20 s).",
)
@click.option(
    "--search-rows",
    type=int,
    default=1_000_000,
    show_default=True,
    help="Messages put in a tenant's log before its searches are timed (0: no search phase).",
)
@click.option(
    "--analytics-events",
    type=int,
    default=200_000,
    show_default=True,
    help="Synthetic delivery events the analytics scenario has aggregated.",
)
@click.option(
    "--policy-suppressions",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    help="Suppressions the policy scenario imports (CSV, through the gateway) before deciding.",
)
@click.option(
    "--webhook-events",
    type=click.IntRange(min=1),
    default=20_000,
    show_default=True,
    help="Events the webhooks scenario delivers to its healthy endpoint.",
)
@click.option(
    "--delivery-jobs",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Delivery jobs the delivery scenario hands one sender at once.",
)
@click.option(
    "--delivery-rate",
    type=click.IntRange(min=10),
    default=100,
    show_default=True,
    help="Jobs/s of the delivery scenario's steady flow (head-of-line phases).",
)
@click.option(
    "--delivery-seconds",
    type=click.IntRange(min=5),
    default=40,
    show_default=True,
    help="Seconds of each head-of-line phase of the delivery scenario.",
)
@click.option(
    "--policy-decisions",
    type=click.IntRange(min=1),
    default=100_000,
    show_default=True,
    help="Suppression decisions the policy scenario times.",
)
@click.option(
    "--render-messages",
    type=click.IntRange(min=1),
    default=20_000,
    show_default=True,
    help="OTPs the render scenario renders and writes as MIME, in this process.",
)
@click.option(
    "--rate",
    type=float,
    default=100.0,
    show_default=True,
    help="Offered messages/s of the fixed-rate mixed phase.",
)
@click.option(
    "--backlog",
    type=int,
    default=20_000,
    show_default=True,
    help="Bulk messages enqueued before the OTPs of the critical scenario.",
)
@click.option(
    "--flood",
    type=int,
    default=3000,
    show_default=True,
    help="Messages tenant A floods with in the fairness scenario.",
)
@click.option(
    "--otp-rate",
    type=float,
    default=10.0,
    show_default=True,
    help="OTPs/s sent through HTTP while the backlog (or tenant A's flood) drains.",
)
@click.option(
    "--window",
    type=float,
    default=120.0,
    show_default=True,
    help="Stop the OTPs of the critical and fairness scenarios after this many seconds even "
    "if the backlog has not drained yet (0: when it has drained).",
)
@click.option(
    "--scale-service",
    type=click.Choice(SCALABLE),
    default="sender",
    show_default=True,
    help="The service run twice in the scale scenario.",
)
@click.option(
    "--tracing/--no-tracing",
    default=True,
    show_default=True,
    help="Export spans to Jaeger, as the platform does by default.",
)
@click.option(
    "--lane-split/--no-lane-split",
    default=True,
    show_default=True,
    help="Run render, policy-check, router and sender as an urgent-lanes process and a "
    "patient-lanes process each (deploy.stack.pipeline), or as one process each.",
)
@click.option(
    "--out", type=click.Path(path_type=Path), default=REPO_ROOT / "bench-results", show_default=True
)
def main(**options: Any) -> None:
    """Benchmark the pipeline against raw SMTP and raw Kafka baselines, on the bench stack."""
    started = datetime.now(UTC)
    results: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "command": "python -m tests.bench " + shlex.join(sys.argv[1:]),
        "options": {
            key: str(value) if isinstance(value, Path) else value for key, value in options.items()
        },
        "machine": report.machine(),
    }
    if options["scenario"] in ("all", "render"):  # in this process: no stack needed
        results["render"] = render_bench(options["render_messages"])
    if options["scenario"] != "render":
        results |= asyncio.run(run(options))
    results["machine"]["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    results["ratios"] = report.ratios(results)
    results["goals"] = [{"met": met, "goal": line} for met, line in report.goals(results)]
    stamp = report.stamp(started)
    saved = report.write_json(results, options["out"], stamp)
    drawn = report.draw(results, options["out"], stamp)
    click.echo("\n" + report.text_report(results) + "\n")
    click.echo(f"figures: {saved}" + (f"\nlatency plot: {drawn}" if drawn else ""))


if __name__ == "__main__":
    main()
