"""One settings object for every process, read from ``SENDARIX_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every knob of the platform; the defaults are the local stack of ``make run``."""

    model_config = SettingsConfigDict(env_prefix="SENDARIX_", frozen=True)

    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    """Prepended to every topic name; tests use it to get topics of their own."""
    database_url: str = "postgresql://sendarix@127.0.0.1:5433/sendarix"
    database_pool_size: int = 10

    http_host: str = "127.0.0.1"
    http_port: int = 8080
    public_url: str = "http://127.0.0.1:8080"

    smtp_submission_host: str = "127.0.0.1"
    smtp_submission_port: int = 1587
    smtp_submission_cert_file: Path | None = None
    smtp_submission_key_file: Path | None = None
    """The SMTP door's STARTTLS certificate chain and key (PEM); when unset, a self-signed
    certificate is generated once into ``smtp_submission_tls_dir`` and reused."""
    smtp_submission_tls_dir: Path = REPO_ROOT / ".state" / "tls"
    smtp_submission_idle_seconds: float = 300.0
    """An SMTP client silent this long is disconnected (RFC 5321 4.5.3.2 suggests 5 minutes)."""

    otlp_endpoint: str = "http://127.0.0.1:4318"
    tracing_enabled: bool = True
    jaeger_ui_url: str = "http://127.0.0.1:16686"
    mailpit_ui_url: str = "http://127.0.0.1:8025"

    relay_host: str = "127.0.0.1"
    relay_port: int = 1025
    """The default route: every domain without a rule of its own (Mailpit in ``make run``)."""
    simulator_host: str = "127.0.0.1"
    simulator_port: int = 2525
    simulator_domain: str = "simulator.sendarix.test"
    simulator_log: Path = REPO_ROOT / ".state" / "run" / "simulator.jsonl"
    bounce_address: str = "bounces@sendarix.test"
    """Every message's envelope sender is a signed VERP form of it (``libs.verp``); its domain
    is the bounce domain the feedback listener answers for."""
    feedback_host: str = "127.0.0.1"
    feedback_port: int = 2526
    """The feedback listener (``services.feedback``): the bounce domain's inbound SMTP server."""
    feedback_max_bytes: int = 1024 * 1024
    """The largest feedback message taken: DSNs and ARF reports are headers and a little text."""
    token_secret: str = ""
    """The key that signs VERP return paths and unsubscribe links (``libs.message_tokens``).
    Required in production: a long random string, the same in every process; every local
    profile sets one of its own."""

    dev_mode: bool = False
    """Whether domains created in dev mode may send before their DNS records are verified:
    true in every local profile (``make run``, tests, bench, chaos), never in production."""
    spf_include: str = "spf.sendarix.test"
    """What a sending domain's SPF record must ``include:`` (the hosts Sendarix sends from)."""
    return_path_label: str = "sx-bounces"
    bounce_host: str = "bounces.sendarix.test"
    """A sending domain publishes ``<return_path_label>.<domain>`` as a CNAME to this host."""
    dns_nameservers: str = ""
    """Comma-separated ``host`` or ``host:port`` that domain checks ask; empty: the system's."""
    dns_timeout_seconds: float = 5.0

    smtp_timeout_seconds: float = 30.0
    smtp_helo_name: str = "sendarix.local"
    smtp_connections_per_route: int = 8
    """Concurrent SMTP connections the sender keeps to one route, per lane."""
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    retry_poll_seconds: float = 0.5
    suppression_poll_seconds: float = 1.0
    """How often policy-check takes in suppressions written elsewhere (API, CLI, another
    process): the staleness bound of its in-process view, plus one poll query."""
    soft_bounce_count: int = 3
    soft_bounce_window_days: float = 7.0
    soft_bounce_pause_days: float = 3.0
    """This many messages to an address that soft-bounced (full mailbox, address or domain not
    answering) within the window pause the address in that stream for this long."""
    webhook_timeout_seconds: float = 10.0
    """How long one webhook post may take, connection included."""
    webhook_concurrency: int = 4
    """Posts in flight at once to one endpoint (each endpoint has its own workers)."""
    webhook_claim_batch: int = 100
    """Queued posts of one endpoint claimed (and their outcomes written) together."""
    webhook_poll_seconds: float = 1.0
    """How often the queue is looked at for posts due (retries, other processes' rows); a new
    event wakes its endpoint's worker at once."""
    webhook_retry_base_seconds: float = 5.0
    """The first pause after a failed post; the later ones follow the schedule of
    ``services.webhook.delivery`` scaled from it (5 s gives 30 s, 2 min, 10 min … 8 h)."""
    webhook_give_up_seconds: float = 72 * 3600.0
    """A post still failing this long after its first attempt is given up (``failed``)."""
    webhook_disable_failures: int = 20
    webhook_disable_seconds: float = 24 * 3600.0
    """An endpoint whose posts all failed — at least this many in a row, over at least this
    long — is disabled (its tenant gets a ``sendarix.webhook.disabled`` notice)."""

    log_level: str = "INFO"
    log_json: bool = True

    def as_env(self) -> dict[str, str]:
        """These settings as ``SENDARIX_*`` variables, to hand to a child process (an unset
        optional setting is left out: ``"None"`` would read back as a value)."""
        values = self.model_dump(mode="json")
        return {
            f"SENDARIX_{name.upper()}": str(value)
            for name, value in values.items()
            if value is not None
        }


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
