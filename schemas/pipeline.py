"""Records that travel between the pipeline stages, one stream per lane at every stage.

A message grows as it moves: ``AcceptedMessage`` (ingest → render) gains its content in
``RenderedMessage`` (render → policy-check → router), its route in ``DeliveryJob`` (router →
sender, retry-scheduler → sender) and its last SMTP reply in ``RetryRequest`` (sender →
retry-scheduler).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from schemas.common import AppliedRule, Lane, Mailbox, Record, Stream
from schemas.send import Attachment


class MessageSpec(Record):
    """What was asked for one recipient, fixed at acceptance and carried unchanged."""

    message_id: str
    tenant_id: str
    trace_id: str
    accepted_at: datetime
    sender: Mailbox
    recipient: Mailbox
    reply_to: Mailbox | None = None
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    template: str | None = None
    template_version: int | None = None
    """The version ingest chose (the active one, or an experiment's variant): render merges
    exactly it. None: no template, or a record from before versions were pinned."""
    data: dict[str, Any] = Field(default_factory=dict)
    locale: str | None = None
    stream: Stream = Stream.TRANSACTIONAL
    category: str | None = None
    lane: Lane
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    attachments: list[Attachment] = Field(default_factory=list)
    send_at: datetime | None = None
    key_id: str | None = None
    """The API key that sent it (None: it came through the topic, which has no key)."""


class PipelineRecord(Record):
    """A record of a pipeline stage: it always carries its message's spec."""

    @property
    def spec(self) -> MessageSpec:
        """The spec of the message this record moves along."""
        raise NotImplementedError


class AcceptedMessage(PipelineRecord):
    """A validated message waiting to be rendered (``sendarix.render.<lane>``)."""

    schema_version: Literal[1] = 1
    message: MessageSpec

    @property
    def spec(self) -> MessageSpec:
        return self.message


class RenderedContent(Record):
    """The subject and bodies after template merge."""

    subject: str
    html: str | None = None
    text: str | None = None
    template_version: int | None = None
    layout_version: int | None = None
    locale: str | None = None
    """The locale of the template that was rendered (after the fallback chain)."""


class Pool(StrEnum):
    """The built-in IP pools: reputations kept apart, so bulk complaints never slow down security
    mail (a tenant may add pools of its own, ``libs.ip_pools``)."""

    SECURITY = "security"
    TRANSACTIONAL = "transactional"
    BULK = "bulk"


class RouteName(StrEnum):
    """The built-in routes every tenant has (their hosts and ports come from the settings; a
    tenant may add routes of its own, ``libs.routes``)."""

    SIMULATOR = "simulator"
    DEFAULT_RELAY = "default-relay"


class RoutingDirective(Record):
    """What a customer rule asks of the router for one message, and which rule asked."""

    rule: AppliedRule
    route: str | None = None
    """A route of the message's tenant, or a built-in one (``RouteName``)."""
    pool: str | None = None
    """An IP pool of the message's tenant, or a built-in one (``Pool``)."""


class RenderedMessage(PipelineRecord):
    """A rendered message on its way through policy-check to the router.

    Carried on ``sendarix.policy.<lane>`` (to be checked) and ``sendarix.route.<lane>`` (cleared).
    """

    schema_version: Literal[1] = 1
    message: MessageSpec
    content: RenderedContent
    directive: RoutingDirective | None = None
    """Set by policy-check when a customer rule decided the message's fate (on ``route.*``)."""

    @property
    def spec(self) -> MessageSpec:
        return self.message


class RouteKind(StrEnum):
    """How a route reaches the recipient's server."""

    MX = "mx"
    """Direct delivery: the recipient domain's MX hosts, in preference order."""
    RELAY = "relay"
    """A smarthost (a provider's submission server, the company's own relay)."""
    SANDBOX = "sandbox"
    """The mailbox simulator: nothing leaves the platform."""


class TlsMode(StrEnum):
    """How the sender secures its SMTP connection to a route."""

    NONE = "none"
    OPPORTUNISTIC = "opportunistic"
    """STARTTLS when the server offers it, plain text otherwise (direct-to-MX mail)."""
    STARTTLS = "starttls"
    """STARTTLS required: a server that does not offer it is not sent to."""
    IMPLICIT = "implicit"
    """TLS from the first byte (port 465)."""


class AuthMethod(StrEnum):
    """The SMTP AUTH mechanism a relay route logs in with."""

    PLAIN = "plain"
    LOGIN = "login"


class SourceAddress(Record):
    """One address of an IP pool: the local address connections are bound to, and the name
    the sender gives in EHLO from it (its reverse DNS)."""

    address: str
    ehlo: str


class Route(Record):
    """Where and how a message is handed over: the SMTP destination and the IP pool."""

    name: str
    kind: RouteKind = RouteKind.RELAY
    host: str
    """The server (relay, sandbox); empty for ``mx``: the recipient domain's MX hosts."""
    port: int
    pool: str
    tls: TlsMode = TlsMode.NONE
    auth: AuthMethod | None = None
    credentials: str | None = None
    """``<tenant>/<route>``: where the sender finds the AUTH login (``libs.route_secrets``); the
    password never travels on a topic."""
    username: str | None = None
    source: SourceAddress | None = None
    """The pool address the router chose for this message (None: the system picks)."""
    return_path_domain: str | None = None
    """The domain of the message's return path when its pool has one of its own."""
    timeout_seconds: float = 30.0


class DeliveryJob(PipelineRecord):
    """One delivery attempt to make (``sendarix.deliver.<lane>``)."""

    schema_version: Literal[1] = 1
    message: MessageSpec
    content: RenderedContent
    route: Route
    fallbacks: list[Route] = Field(default_factory=list)
    """Where the message goes when its route cannot take it (route down, drained): the route's
    fallback chain, resolved by the router."""
    attempt: int = Field(ge=1)
    retry_until: datetime

    @property
    def spec(self) -> MessageSpec:
        return self.message


class SmtpReply(Record):
    """An SMTP server's answer (or the sender's own, for network errors: code 0)."""

    code: int
    enhanced_status: str | None = None
    text: str


class HoldReason(StrEnum):
    """Why an attempt waits in the retry-scheduler."""

    DEFERRED = "deferred"
    """The server deferred it (an attempt was made)."""
    SHAPED = "shaped"
    """Its site's rate limit: not an attempt, it goes when the site has room."""
    PAUSED = "paused"
    """An operator paused its tenant, lane, route or site: released when resumed."""


DEFAULT_RETRY_WINDOWS: dict[Lane, timedelta] = {
    Lane.CRITICAL: timedelta(minutes=15),
    Lane.HIGH: timedelta(hours=24),
    Lane.NORMAL: timedelta(hours=48),
    Lane.BULK: timedelta(hours=72),
}
"""How long after its sending began a message of each lane is still worth another attempt (a
tenant may set its own, ``libs.retry_windows``): a one-time code is useless after minutes."""


class RetryRequest(PipelineRecord):
    """A deferred attempt to repeat at ``due_at`` (``sendarix.retry.<lane>``)."""

    schema_version: Literal[1] = 1
    job: DeliveryJob
    due_at: datetime
    reply: SmtpReply
    hold: HoldReason = HoldReason.DEFERRED
    site: str | None = None
    """The destination site it waits for, when the sender knew it."""

    @property
    def spec(self) -> MessageSpec:
        return self.job.message


PARKED_HEADER_PREFIX = "sendarix-dlq-"


class ParkedRecord(Record):
    """Why a record was parked on a dead-letter topic: the Kafka headers beside its bytes.

    A parked record keeps its original key, value and headers, byte for byte (so a record of any
    size or encoding can be parked and replayed); these fields travel as headers named
    ``sendarix-dlq-<field>`` (``_`` written as ``-``).
    """

    reason: str
    """Machine-readable code, e.g. ``invalid_request``, ``undecodable_record``."""
    detail: str
    pointers: tuple[str, ...] = ()
    """JSON pointers of the bad fields, when the record was refused field by field."""
    exception: str | None = None
    """The type of the unexpected exception that parked it, if one did."""
    service: str
    role: str
    """The consumer that parked it, e.g. ``render`` / ``bulk`` or ``ingest`` / ``recorder``."""
    topic: str
    partition: int
    offset: int
    message_id: str | None = None
    parked_at: datetime

    def headers(self) -> list[tuple[str, bytes]]:
        """The fields as Kafka headers."""
        values = self.model_dump(mode="json", exclude_none=True)
        values["pointers"] = json.dumps(list(self.pointers), ensure_ascii=False)
        return [
            (PARKED_HEADER_PREFIX + name.replace("_", "-"), str(value).encode())
            for name, value in values.items()
        ]

    @classmethod
    def from_headers(cls, headers: list[tuple[str, bytes]]) -> ParkedRecord:
        """The fields back from a parked record's headers."""
        values: dict[str, Any] = {
            name.removeprefix(PARKED_HEADER_PREFIX).replace("-", "_"): value.decode()
            for name, value in headers
            if name.startswith(PARKED_HEADER_PREFIX)
        }
        pointers = json.loads(values.pop("pointers", "[]"))
        return cls.model_validate(values | {"pointers": tuple(pointers)})
