"""``python -m tests.bench``: run the benchmark scenarios on the bench stack and report them."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from deploy.stack.infra import infra_ports
from deploy.stack.profiles import BENCH
from libs.settings import REPO_ROOT
from tests.bench import report
from tests.bench.baselines import kafka_loop, smtp_blast
from tests.bench.load import Load
from tests.bench.measure import ProcessSampler, listener_pids
from tests.bench.scenarios import SCALABLE, critical, mixed, scale
from tests.bench.stack import bench_stack

SCENARIOS = ("all", "baselines", "mixed", "critical", "scale")
IDLE_SECONDS = 5.0
"""How long the idle stack's own CPU use is sampled, before any load."""
SMTP_MESSAGE_BYTES = 2048
"""About the size of a rendered bulk notice (HTML and text parts) on the wire."""


async def run(options: dict[str, Any]) -> dict[str, Any]:
    """Bring the stack up, run the chosen scenarios, return every figure."""
    chosen = options["scenario"]
    results: dict[str, Any] = {}
    async with bench_stack(options["tracing"]) as stack:
        reused = {
            name: port for name, port in infra_ports(BENCH).items() if name not in stack.infra
        }
        infra = listener_pids(reused)
        sampler = ProcessSampler(lambda: {**infra, **stack.running()})
        sampling = asyncio.create_task(sampler.run())
        load = Load(stack)
        await load.start()
        try:
            quiet = time.monotonic()
            await asyncio.sleep(IDLE_SECONDS)
            results["idle"] = {
                "seconds": IDLE_SECONDS,
                "processes": sampler.window(quiet, time.monotonic()),
            }
            if chosen in ("all", "baselines"):
                results["baselines"] = {
                    "smtp": await smtp_blast(
                        stack.sink, options["baseline_messages"], SMTP_MESSAGE_BYTES
                    ),
                    "kafka": await kafka_loop(
                        stack.settings.kafka_bootstrap,
                        stack.settings.topic_prefix,
                        options["baseline_messages"],
                        load.record_size(),
                    ),
                }
            if chosen in ("all", "mixed"):
                results["mixed"] = await mixed(
                    stack, load, sampler, options["messages"], options["rate"]
                )
            if chosen in ("all", "critical"):
                results["critical"] = await critical(
                    stack,
                    load,
                    sampler,
                    options["backlog"],
                    options["otp_rate"],
                    options["window"],
                )
            if chosen in ("all", "scale"):
                results["scale"] = await scale(
                    stack, load, sampler, options["scale_service"], options["messages"]
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


@click.command()
@click.option("--scenario", type=click.Choice(SCENARIOS), default="all", show_default=True)
@click.option(
    "--messages",
    type=int,
    default=1000,
    show_default=True,
    help="Messages per phase of the mixed and scale scenarios.",
)
@click.option(
    "--baseline-messages",
    type=int,
    default=10_000,
    show_default=True,
    help="Messages (records) per baseline: they are fast, so more of them.",
)
@click.option(
    "--rate",
    type=float,
    default=20.0,
    show_default=True,
    help="Offered messages/s of the fixed-rate mixed phase.",
)
@click.option(
    "--backlog",
    type=int,
    default=3000,
    show_default=True,
    help="Bulk messages enqueued before the OTPs of the critical scenario.",
)
@click.option(
    "--otp-rate",
    type=float,
    default=10.0,
    show_default=True,
    help="OTPs/s sent through HTTP while the backlog drains.",
)
@click.option(
    "--window",
    type=float,
    default=None,
    help="Stop the critical scenario's OTPs after this many seconds even if the backlog has "
    "not drained yet (default: when it has drained).",
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
    results |= asyncio.run(run(options))
    results["ratios"] = report.ratios(results)
    results["goals"] = [{"met": met, "goal": line} for met, line in report.goals(results)]
    stamp = report.stamp(started)
    saved = report.write_json(results, options["out"], stamp)
    drawn = report.draw(results, options["out"], stamp)
    click.echo("\n" + report.text_report(results) + "\n")
    click.echo(f"figures: {saved}" + (f"\nlatency plot: {drawn}" if drawn else ""))


if __name__ == "__main__":
    main()
