"""One settings object for every process, read from ``SENDARIX_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.common import Lane

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every knob of the platform; the defaults are the local stack of ``make run``."""

    model_config = SettingsConfigDict(env_prefix="SENDARIX_", frozen=True)

    kafka_bootstrap: str = "127.0.0.1:9092"
    lanes: str = "critical,high,normal,bulk"
    """Comma-separated lanes whose stage records this process handles (render, policy-check,
    router, sender). A deployment may run a stage service twice, its urgent lanes in one
    process and the patient lanes in another, so that an OTP never waits on an event loop
    busy with bulk work (``deploy.stack.pipeline.LANE_SPLIT_SERVICES``)."""
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
    """Jaeger's query API: where the console and ``sendarix trace`` read a trace's spans."""
    tracing_ui_url: str = "http://127.0.0.1:9411"
    """The tracing UI people open (Zipkin, fed by Jaeger through the broker)."""
    mailpit_ui_url: str = "http://127.0.0.1:8025"

    gateway_url: str = ""
    """Where the console reaches the gateway; unset: ``http_host:http_port`` (one host)."""
    console_host: str = "127.0.0.1"
    console_port: int = 8090
    console_secret: str = ""
    """The key of the support console's session cookies; unset: ``token_secret``, else a random
    one per process (sessions then end when the console restarts)."""
    console_session_hours: float = 8.0

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
    smtp_tls_ca_file: Path | None = None
    """A CA the sender trusts besides the system's when it verifies a server's certificate
    (``starttls`` and ``implicit`` routes): a company relay's own CA, the tests' self-signed one."""
    mx_port: int = 25
    """The port of MX hosts (25 on the internet; tests point it at a loopback server)."""
    mta_sts_port: int = 443
    """The HTTPS port MTA-STS policies are fetched from (``https://mta-sts.<domain>``): 443 on
    the internet; tests point it at a loopback server."""
    slow_site_budget_seconds: float = 2.0
    """An attempt not at DATA within this long is abandoned (nothing was sent) and its site is
    marked slow: its mail goes to ``deliver-slow`` until it answers quickly again."""
    slow_site_grace_seconds: float = 0.2
    """Sooner than the budget, an attempt is abandoned (and its site marked slow) once the rest
    of its batch finished at least this long after it began and nothing finished for this long
    since, or once it was alone in its batch this long while mail of its lane waits behind: a
    slow destination holds its lane for about this, not the whole budget."""
    slow_site_cooldown_seconds: float = 60.0
    """How long a site stays marked slow before its mail is tried in the lane again."""
    ip_pools: str = ""
    """The built-in pools' source addresses, JSON: ``{"security": [{"address": "127.0.0.2",
    "ehlo": "otp.example.com", "weight": 1}], ...}``; a pool without addresses lets the system
    pick."""
    critical_return_path_domain: str = ""
    """The return-path domain of the ``security`` pool's mail (critical and high), so OTP
    bounces never share a domain's reputation with bulk; empty: the bounce address's own."""
    credentials_key: str = ""
    """The key relay passwords are encrypted with at rest (``libs.route_secrets``). Required in
    production, the same in every process; every local profile sets one of its own."""
    operator_tenant: str = "operator"
    """Admin keys of this tenant are operators: they see every tenant's queues and may pause a
    lane or a site for everyone."""
    queue_control_poll_seconds: float = 0.25
    """How often the sender reads the operator controls (pause, drain): a pause takes effect
    within this, plus the batch in hand."""
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

    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    """Where this process serves its Prometheus metrics (``libs.metrics``); 0: nowhere. The
    stack gives each service a port of its own (``deploy.stack.pipeline.metrics_ports``)."""
    metrics_public: bool = False
    """Whether ingest's HTTP gateway also answers ``GET /metrics``, without authentication:
    every local profile, never a production gateway reachable from the internet (Prometheus
    scrapes ingest's ``metrics_port`` there, as it does every other service's)."""

    analytics_minute_retention_hours: float = 48.0
    analytics_hour_retention_days: float = 90.0
    analytics_day_retention_days: float = 730.0
    """How long the analytics aggregates keep minute, hour and day buckets."""
    alert_evaluation_seconds: float = 15.0
    """How often the analytics service evaluates the deliverability alerts of every tenant."""
    alert_resolve_ratio: float = 0.8
    """An open alert resolves once its value falls below this share of its warning threshold
    (hysteresis: a value hovering at the threshold does not open and resolve it again and
    again)."""
    alert_bounce_warning: float = 0.02
    alert_bounce_critical: float = 0.05
    alert_bounce_window_seconds: int = 3600
    alert_bounce_min_sample: int = 100
    """Bounced / (delivered + bounced) over the window. Amazon SES puts an account under review
    at a 5 % bounce rate (and recommends staying under 2 %); most ESPs warn at 2 %."""
    alert_complaint_warning: float = 0.001
    alert_complaint_critical: float = 0.003
    alert_complaint_window_seconds: int = 86400
    alert_complaint_min_sample: int = 1000
    """Complained / delivered over a day: Gmail's and Yahoo's bulk-sender requirements (2024)
    ask senders to stay below 0.1 % and never reach 0.3 %."""
    alert_domain_warning: float = 0.2
    alert_domain_critical: float = 0.5
    alert_domain_window_seconds: int = 900
    alert_domain_min_sample: int = 50
    """Per recipient domain: (deferred + bounced for a block or policy reason) / (delivered +
    bounced + deferred) over the window — a destination starting to throttle or block."""
    alert_latency_warning_ms: float = 10_000.0
    alert_latency_critical_ms: float = 30_000.0
    alert_latency_window_seconds: int = 300
    alert_latency_min_sample: int = 20
    """The critical lane's accept -> delivered p99: one-time codes are useless after a minute."""

    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("lanes")
    @classmethod
    def _known_lanes(cls, value: str) -> str:
        if not _lanes_named(value):
            raise ValueError("at least one lane")
        return value

    @property
    def served_lanes(self) -> tuple[Lane, ...]:
        """The lanes of ``lanes``, in the order of urgency."""
        named = _lanes_named(self.lanes)
        return tuple(lane for lane in Lane if lane in named)

    @property
    def internal_gateway_url(self) -> str:
        """Where processes of the platform reach the gateway (the console calls it here)."""
        if self.gateway_url:
            return self.gateway_url
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::", "") else self.http_host
        return f"http://{host}:{self.http_port}"

    def as_env(self) -> dict[str, str]:
        """These settings as ``SENDARIX_*`` variables, to hand to a child process (an unset
        optional setting is left out: ``"None"`` would read back as a value)."""
        values = self.model_dump(mode="json")
        return {
            f"SENDARIX_{name.upper()}": str(value)
            for name, value in values.items()
            if value is not None
        }


def _lanes_named(value: str) -> set[Lane]:
    """The lanes a comma-separated list names (spaces around a name allowed); an unknown name
    raises ValueError."""
    return {Lane(name.strip()) for name in value.split(",") if name.strip()}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
