"""``python -m tests.chaos``: the full fault-injection run of ``make chaos``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import click

from deploy.stack.profiles import CHAOS
from tests.chaos.scenario import ChaosReport, run_chaos
from tests.chaos.stack import start_chaos_stack


def describe(report: ChaosReport) -> str:
    """The run's figures as a small table."""
    figures = report.figures
    rows = [
        ("messages sent", report.messages),
        ("accepted", figures.accepted),
        ("refused", figures.refused),
        *((f"refused: {why}", count) for why, count in report.refusals.items()),
        ("lost", figures.lost),
        ("duplicated (Message-ID received twice)", figures.duplicated),
        ("more than one terminal state", figures.conflicting),
        ("failed: delivery_outcome_unknown", figures.outcome_unknown),
        ("delivered but never received", figures.delivered_unseen),
        ("distinct Message-IDs received", figures.received),
        ("received, never reported accepted", figures.received_unaccepted),
        *((f"terminal: {state}", count) for state, count in figures.outcomes.items()),
        ("services that died on their own", ", ".join(report.dead_services) or "none"),
        ("faults", "; ".join(report.faults)),
        ("duration", f"{report.seconds:.0f} s"),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


async def _run(messages: int, rate: float, concurrency: int, drain_timeout: float) -> ChaosReport:
    log = CHAOS.state_dir / "logs" / "chaos.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=log, level=logging.INFO, force=True)  # clients' reconnect noise
    stack = await start_chaos_stack()
    try:
        click.echo(f"chaos stack up; logs in {stack.supervisor.log_dir}", err=True)
        return await run_chaos(
            stack,
            messages,
            rate=rate,
            concurrency=concurrency,
            drain_timeout=drain_timeout,
            show_progress=True,
        )
    finally:
        await stack.stop()


@click.command()
@click.option("--messages", default=10_000, show_default=True, help="How many messages to send.")
@click.option(
    "--rate",
    default=20.0,
    show_default=True,
    help="Messages offered per second (0: as fast as accepted); spreads traffic over the faults.",
)
@click.option("--concurrency", default=32, show_default=True, help="Requests in flight.")
@click.option(
    "--drain-timeout",
    default=180.0,
    show_default=True,
    help="Seconds the drain waits without any message reaching its end before it counts losses.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path(".state/chaos/report.json"),
    show_default=True,
    help="Where to write the figures.",
)
def main(
    messages: int, rate: float, concurrency: int, drain_timeout: float, json_path: Path
) -> None:
    """Send messages while killing every service, the broker and the database; count the damage.

    Exits 1 when a message was lost, received twice, or ended in two states.
    """
    report = asyncio.run(_run(messages, rate, concurrency, drain_timeout))
    click.echo(describe(report))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPUs {platform.machine()}, {platform.system()}"
        f" {platform.release()}, Python {platform.python_version()}",
        **asdict(report),
    }
    json_path.write_text(json.dumps(summary, indent=2) + "\n")
    click.echo(f"figures written to {json_path}")
    sys.exit(0 if report.figures.clean and not report.dead_services else 1)


if __name__ == "__main__":
    main()
