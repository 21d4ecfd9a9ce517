"""Port and folder sets of the local stack: ``dev`` for ``make run``, ``test`` for ``make test``.

The two never share a port, so the test suite runs beside a running ``make run``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from libs.settings import REPO_ROOT, Settings

STATE_ROOT = REPO_ROOT / ".state"


@dataclass(frozen=True)
class Profile:
    """Where each component of one stack listens and keeps its state."""

    name: str
    kafka_port: int
    kafka_controller_port: int
    postgres_port: int
    otlp_grpc_port: int
    otlp_http_port: int
    jaeger_ui_port: int
    mailpit_smtp_port: int
    mailpit_ui_port: int
    simulator_port: int
    http_port: int

    @property
    def state_dir(self) -> Path:
        """The git-ignored folder holding this stack's data and logs."""
        return STATE_ROOT / self.name

    @property
    def database_url(self) -> str:
        return f"postgresql://sendarix@127.0.0.1:{self.postgres_port}/sendarix"

    def settings(self, **overrides: object) -> Settings:
        """The settings that point a process at this stack."""
        values: dict[str, object] = {
            "kafka_bootstrap": f"127.0.0.1:{self.kafka_port}",
            "database_url": self.database_url,
            "otlp_endpoint": f"http://127.0.0.1:{self.otlp_http_port}",
            "jaeger_ui_url": f"http://127.0.0.1:{self.jaeger_ui_port}",
            "mailpit_ui_url": f"http://127.0.0.1:{self.mailpit_ui_port}",
            "relay_port": self.mailpit_smtp_port,
            "simulator_port": self.simulator_port,
            "simulator_log": self.state_dir / "run" / "simulator.jsonl",
            "http_port": self.http_port,
            "public_url": f"http://127.0.0.1:{self.http_port}",
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]


DEV = Profile(
    name="dev",
    kafka_port=9092,
    kafka_controller_port=9093,
    postgres_port=5433,
    otlp_grpc_port=4317,
    otlp_http_port=4318,
    jaeger_ui_port=16686,
    mailpit_smtp_port=1025,
    mailpit_ui_port=8025,
    simulator_port=2525,
    http_port=8080,
)

TEST = Profile(
    name="test",
    kafka_port=19092,
    kafka_controller_port=19093,
    postgres_port=15433,
    otlp_grpc_port=14317,
    otlp_http_port=14318,
    jaeger_ui_port=26686,
    mailpit_smtp_port=11025,
    mailpit_ui_port=18025,
    simulator_port=12525,
    http_port=18080,
)
