"""Port and folder sets of the local stack: ``dev`` for ``make run``, ``test`` for ``make test``,
``chaos`` for ``make chaos``, ``bench`` for ``make bench``.

No two share a port, so the test suite and the chaos run go on beside a running ``make run``.
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
    jaeger_query_grpc_port: int
    jaeger_health_port: int
    mailpit_smtp_port: int
    mailpit_ui_port: int
    simulator_port: int
    http_port: int
    smtp_submission_port: int
    feedback_port: int
    metrics_base_port: int
    console_port: int
    zipkin_port: int
    """The first of the services' metrics ports: one each, in ``SERVICES`` order."""
    durable: bool = True
    """Whether the database flushes to disk; the test stack trades that for speed."""

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
            "tracing_ui_url": f"http://127.0.0.1:{self.zipkin_port}",
            "console_port": self.console_port,
            "mailpit_ui_url": f"http://127.0.0.1:{self.mailpit_ui_port}",
            "relay_port": self.mailpit_smtp_port,
            "simulator_port": self.simulator_port,
            "simulator_log": self.state_dir / "run" / "simulator.jsonl",
            "http_port": self.http_port,
            "public_url": f"http://127.0.0.1:{self.http_port}",
            "smtp_submission_port": self.smtp_submission_port,
            "smtp_submission_tls_dir": self.state_dir / "tls",
            "feedback_port": self.feedback_port,
            "token_secret": f"sendarix-{self.name}-only-token-secret",  # never a production one
            "credentials_key": f"sendarix-{self.name}-only-credentials-key",  # nor this
            "dev_mode": True,  # every local stack: tenant domains send before DNS verification
            "metrics_public": True,  # a local gateway answers GET /metrics too
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
    jaeger_query_grpc_port=16685,
    jaeger_health_port=13133,
    mailpit_smtp_port=1025,
    mailpit_ui_port=8025,
    simulator_port=2525,
    http_port=8080,
    smtp_submission_port=1587,
    feedback_port=2526,
    metrics_base_port=9400,
    console_port=8090,
    zipkin_port=9411,
)

TEST = Profile(
    name="test",
    kafka_port=19092,
    kafka_controller_port=19093,
    postgres_port=15433,
    otlp_grpc_port=14317,
    otlp_http_port=14318,
    jaeger_ui_port=26686,
    jaeger_query_grpc_port=26685,
    jaeger_health_port=23133,
    mailpit_smtp_port=11025,
    mailpit_ui_port=18025,
    simulator_port=12525,
    http_port=18080,
    smtp_submission_port=11587,
    feedback_port=12526,
    metrics_base_port=19400,
    console_port=18090,
    zipkin_port=19411,
    durable=False,
)

CHAOS = Profile(
    name="chaos",
    kafka_port=29092,
    kafka_controller_port=29093,
    postgres_port=25433,
    otlp_grpc_port=24317,
    otlp_http_port=24318,
    jaeger_ui_port=36686,
    jaeger_query_grpc_port=36685,
    jaeger_health_port=33133,
    mailpit_smtp_port=21025,
    mailpit_ui_port=28025,
    simulator_port=22525,
    http_port=28080,
    smtp_submission_port=21587,
    feedback_port=22526,
    metrics_base_port=29400,
    console_port=28090,
    zipkin_port=29411,
)
"""``make chaos``: a broker and database of its own (+20000 from ``dev``) that it may restart."""

BENCH = Profile(
    name="bench",
    kafka_port=31092,
    kafka_controller_port=31093,
    postgres_port=31433,
    otlp_grpc_port=31317,
    otlp_http_port=31318,
    jaeger_ui_port=31686,
    jaeger_query_grpc_port=31685,
    jaeger_health_port=31133,
    mailpit_smtp_port=31025,
    mailpit_ui_port=31825,
    simulator_port=31525,
    http_port=31080,
    smtp_submission_port=31587,
    feedback_port=31526,
    metrics_base_port=31400,
    console_port=31090,
    zipkin_port=31411,
    durable=False,
)
"""``make bench``: ports of its own in 31xxx, below Linux's ephemeral range (32768 and up), where
a benchmark's thousands of client connections could take a listening port first."""

PROFILES = {profile.name: profile for profile in (DEV, TEST, CHAOS, BENCH)}
