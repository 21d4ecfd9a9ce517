"""Customer rules as data: what a tenant asks policy-check to do with the messages they match.

Each rule matches on some of stream, category, lane, sender and recipient domain, tag and
metadata (all it sets must fit) and says allow, block, hold (for a while), or force a lane, a
route or a pool. A tenant's enabled rules are read in order and the first that matches decides
(``services.policy_check.rules``). The ``/v1/rules`` routes and ``sendarix rule`` are two clients
of these functions, which also refuse a rule that would buy mail a lane or a pool it does not
earn: the critical lane is for security mail under the tenant's critical rate, the security pool
for critical and high mail only.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property, reduce
from typing import Annotated, Any, Self

import asyncpg
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from libs.database import Connection
from libs.ip_pools import Name, lock_routing, tenant_pools
from libs.routes import tenant_routes
from libs.sendable import domain_of
from libs.sending_domains import InvalidDomain, normalise_domain
from schemas.common import (
    DEFAULT_PRIORITY_CEILING,
    AppliedRule,
    Category,
    Lane,
    Stream,
    Tag,
    lane_for,
)
from schemas.pipeline import MessageSpec, Pool, RouteName

DEFAULT_HOLD = timedelta(hours=72)
MAX_HOLD = timedelta(days=30)
MAX_RULES_PER_TENANT = 200
"""Rules a tenant may have: policy-check reads them in order for every message."""
MAX_METADATA_PAIRS = 20
SUBDOMAINS = "*."
"""A domain criterion starting with this matches the domain's subdomains (not itself)."""

Description = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$")
]
MetadataText = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class RuleAction(StrEnum):
    """What a rule does with the messages it matches."""

    ALLOW = "allow"
    """Let them go, and look at no later rule."""
    BLOCK = "block"
    """Stop them: ``blocked``, problem ``blocked_by_rule``."""
    HOLD = "hold"
    """Keep them until released, cancelled or expired (``libs.held``)."""
    FORCE_LANE = "force_lane"
    FORCE_ROUTE = "force_route"
    FORCE_POOL = "force_pool"


class RuleRefused(ValueError):
    """A rule the platform will not apply; ``code`` says why (a 422 problem at the API)."""

    def __init__(self, code: str, detail: str, field: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.field = field


def domain_pattern(text: str) -> str:
    """A domain criterion as stored: normalised, with its ``*.`` (subdomains) prefix if any."""
    wildcard = text.strip().startswith(SUBDOMAINS)
    try:
        domain = normalise_domain(text.strip().removeprefix(SUBDOMAINS))
    except InvalidDomain as error:
        raise ValueError(str(error)) from None
    return SUBDOMAINS + domain if wildcard else domain


def domain_matches(pattern: str, domain: str) -> bool:
    """Whether ``domain`` is ``pattern`` (or, for ``*.d``, a subdomain of d)."""
    if pattern.startswith(SUBDOMAINS):
        return domain.endswith(pattern[1:])
    return domain == pattern


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What rules match on, read once per message rather than once per rule."""

    stream: Stream
    category: str | None
    lane: Lane
    sender_domain: str
    recipient_domain: str
    tags: frozenset[str]
    metadata: Mapping[str, str]

    @classmethod
    def of(cls, spec: MessageSpec) -> MessageFacts:
        return cls(
            spec.stream,
            spec.category,
            spec.lane,
            domain_of(spec.sender.address),
            domain_of(spec.recipient.address),
            frozenset(spec.tags),
            spec.metadata,
        )


Check = Callable[[MessageFacts], bool]


def _anything(facts: MessageFacts) -> bool:
    return True


def _both(first: Check, second: Check) -> Check:
    if first is _anything:
        return second
    return lambda facts: first(facts) and second(facts)


class RuleMatch(BaseModel):
    """Which messages a rule is about: every criterion set must fit (none set: every message)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stream: Stream | None = None
    category: Category | None = None
    lane: Lane | None = None
    sender_domain: str | None = Field(None, max_length=260)
    """``example.com`` (that domain) or ``*.example.com`` (its subdomains)."""
    recipient_domain: str | None = Field(None, max_length=260)
    tag: Tag | None = None
    metadata: dict[MetadataText, MetadataText] = Field(
        default_factory=dict, max_length=MAX_METADATA_PAIRS
    )
    """Key/value pairs the message's metadata must all have."""

    @field_validator("sender_domain", "recipient_domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        return domain_pattern(value) if value is not None else None

    def fits(self, facts: MessageFacts) -> bool:
        """Whether a message with ``facts`` has everything this match asks for."""
        return self.test(facts)

    @cached_property
    def test(self) -> Check:
        """The criteria set, as one function worked out once: a rule costs only what it asks
        (policy-check runs it for every message and rule until one fits)."""
        checks: list[Check] = []
        if (stream := self.stream) is not None:
            checks.append(lambda facts: facts.stream is stream)
        if (category := self.category) is not None:
            checks.append(lambda facts: facts.category == category)
        if (lane := self.lane) is not None:
            checks.append(lambda facts: facts.lane is lane)
        if (recipient := self.recipient_domain) is not None:
            checks.append(lambda facts: domain_matches(recipient, facts.recipient_domain))
        if (sender := self.sender_domain) is not None:
            checks.append(lambda facts: domain_matches(sender, facts.sender_domain))
        if (tag := self.tag) is not None:
            checks.append(lambda facts: tag in facts.tags)
        if pairs := tuple(self.metadata.items()):
            checks.append(lambda facts: all(facts.metadata.get(k) == v for k, v in pairs))
        everything: Check = _anything
        return reduce(_both, checks, everything)


ACTION_FIELD: dict[RuleAction, str] = {
    RuleAction.HOLD: "hold_seconds",
    RuleAction.FORCE_LANE: "lane",
    RuleAction.FORCE_ROUTE: "route",
    RuleAction.FORCE_POOL: "pool",
}
"""The field that says how each action acts (the other actions need none)."""


class RuleFields(BaseModel):
    """A rule as its tenant writes it (``POST /v1/rules``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: Description = ""
    enabled: bool = True
    position: int | None = Field(None, ge=0, le=1_000_000)
    """Where it is read: lower first (default: after the tenant's other rules)."""
    match: RuleMatch = Field(default_factory=RuleMatch)
    action: RuleAction
    lane: Lane | None = None
    """``force_lane``: the lane to send in (never above what the message earns)."""
    route: Name | None = None
    """``force_route``: the route to hand the message to (the tenant's, or a built-in one)."""
    pool: Name | None = None
    """``force_pool``: the IP pool to send from (the tenant's or a built-in one, never
    ``security``)."""
    hold_seconds: int | None = Field(None, ge=60, le=int(MAX_HOLD.total_seconds()))
    """``hold``: how long a held message waits before it expires (default 72 h)."""

    @model_validator(mode="after")
    def _one_parameter(self) -> Self:
        wanted = ACTION_FIELD.get(self.action)
        for name in ACTION_FIELD.values():
            given = getattr(self, name) is not None
            if name == wanted and not given and self.action is not RuleAction.HOLD:
                raise ValueError(f"action {self.action.value} needs {name}")
            if name != wanted and given:
                raise ValueError(f"{name} is for another action than {self.action.value}")
        return self

    @property
    def hold(self) -> timedelta:
        """How long a message this rule holds waits."""
        return timedelta(seconds=self.hold_seconds) if self.hold_seconds else DEFAULT_HOLD


class Rule(RuleFields):
    """A stored rule of a tenant."""

    id: str
    tenant_id: str
    position: int
    created_at: datetime
    updated_at: datetime

    def applied(self, hold_until: datetime | None = None) -> AppliedRule:
        """How the events and records of a message say this rule decided its fate."""
        return AppliedRule(
            id=self.id,
            action=self.action.value,
            description=self.description,
            hold_until=hold_until,
        )


def ruled_lane(spec: MessageSpec, forced: Lane, ceiling: Lane) -> Lane | None:
    """The lane ``forced`` puts ``spec`` in, or None when the rule may not (it is ignored).

    A rule may lower a lane at will and raise it as ``priority`` could (``lane_for``: up to
    the tenant's ceiling, never broadcast mail, critical only for security categories); and
    never into ``critical`` from a lane the critical rate cap kept the message out of.
    """
    earned = lane_for(spec.category, spec.stream, forced, ceiling)
    if earned is not forced:
        return None
    if forced is Lane.CRITICAL and spec.lane is not Lane.CRITICAL:
        return None
    return forced


def pool_allowed(pool: str) -> bool:
    """Whether a rule may put mail in ``pool``: the security pool's reputation is the critical
    and high lanes' alone, which the router gives it for them."""
    return pool != Pool.SECURITY


def refusal(fields: RuleFields, ceiling: Lane) -> RuleRefused | None:
    """Why the platform would never apply ``fields`` for a tenant whose ceiling is ``ceiling``
    (None: it may be saved)."""
    if fields.lane is not None:
        streams = [fields.match.stream] if fields.match.stream else list(Stream)
        category = fields.match.category
        if all(lane_for(category, s, fields.lane, ceiling) is not fields.lane for s in streams):
            return RuleRefused(
                "lane_not_allowed",
                f"no message this rule matches earns the {fields.lane.value} lane: a rule may"
                f" lower a lane, or raise it up to {ceiling.value} (critical: security"
                " categories only)",
                "/lane",
            )
    if fields.pool is not None and not pool_allowed(fields.pool):
        return RuleRefused(
            "pool_not_allowed",
            f"the {fields.pool} pool carries critical and high mail only",
            "/pool",
        )
    return None


COLUMNS = (
    "id, tenant_id, position, enabled, description, match, action, lane, route, pool,"
    " hold_seconds, created_at, updated_at"
)
ORDER = "ORDER BY position, created_at, id"


def _rule(row: asyncpg.Record) -> Rule:
    values = {name: row[name] for name in Rule.model_fields}
    values["id"], values["tenant_id"] = str(row["id"]), str(row["tenant_id"])
    return Rule.model_validate(values)


def _tenant_key(tenant_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(tenant_id)
    except ValueError:
        return None


def _values(fields: RuleFields) -> list[Any]:
    return [
        fields.enabled,
        fields.description,
        fields.match.model_dump(mode="json", exclude_defaults=True),
        fields.action.value,
        fields.lane.value if fields.lane else None,
        fields.route,
        fields.pool,
        fields.hold_seconds,
    ]


async def _ceiling(connection: Connection, tenant: uuid.UUID) -> Lane:
    stored = await connection.fetchval("SELECT priority_ceiling FROM tenants WHERE id = $1", tenant)
    return Lane(stored) if stored else DEFAULT_PRIORITY_CEILING


async def _route_names(connection: Connection, tenant_id: str) -> set[str]:
    return set(RouteName) | {r.name for r in await tenant_routes(connection, tenant_id)}


async def _pool_names(connection: Connection, tenant_id: str) -> set[str]:
    return set(Pool) | {p.name for p in await tenant_pools(connection, tenant_id)}


async def _checked(connection: Connection, tenant: uuid.UUID, fields: RuleFields) -> None:
    refused = refusal(fields, await _ceiling(connection, tenant))
    if refused is not None:
        raise refused
    tenant_id = str(tenant)
    if (route := fields.route) is not None and route not in await _route_names(
        connection, tenant_id
    ):
        raise RuleRefused("unknown_route", f"the tenant has no route {route!r}", "/route")
    if (pool := fields.pool) is not None and pool not in await _pool_names(connection, tenant_id):
        raise RuleRefused("unknown_pool", f"the tenant has no pool {pool!r}", "/pool")


async def list_rules(pool: asyncpg.Pool, tenant_id: str) -> list[Rule]:
    """The tenant's rules, in the order they are read."""
    tenant = _tenant_key(tenant_id)
    if tenant is None:
        return []
    rows = await pool.fetch(f"SELECT {COLUMNS} FROM rules WHERE tenant_id = $1 {ORDER}", tenant)
    return [_rule(row) for row in rows]


async def _one_rule(
    pool: asyncpg.Pool, tenant_id: str, rule_id: str, statement: str
) -> Rule | None:
    """The rule ``statement`` (given tenant $1 and id $2) returns; None without one."""
    tenant, key = _tenant_key(tenant_id), _tenant_key(rule_id)
    if tenant is None or key is None:
        return None
    row = await pool.fetchrow(statement, tenant, key)
    return _rule(row) if row else None


async def get_rule(pool: asyncpg.Pool, tenant_id: str, rule_id: str) -> Rule | None:
    """One rule of the tenant (None: no such rule, or another tenant's)."""
    statement = f"SELECT {COLUMNS} FROM rules WHERE tenant_id = $1 AND id = $2"
    return await _one_rule(pool, tenant_id, rule_id, statement)


async def add_rule(pool: asyncpg.Pool, tenant_id: str, fields: RuleFields) -> Rule:
    """Store a new rule (after the tenant's others unless it has a position); ``RuleRefused``
    when it would lift mail above what it earns, names a route or pool the tenant lacks, or the
    tenant has as many rules as it may."""
    tenant = uuid.UUID(tenant_id)
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", tenant)
        await lock_routing(connection, tenant_id)
        await _checked(connection, tenant, fields)
        stats = await connection.fetchrow(
            "SELECT count(*), max(position) FROM rules WHERE tenant_id = $1", tenant
        )
        assert stats is not None, "an aggregate has a row"
        count, last = stats
        if count >= MAX_RULES_PER_TENANT:
            raise RuleRefused(
                "rule_limit_reached", f"a tenant may have {MAX_RULES_PER_TENANT} rules", ""
            )
        position = fields.position if fields.position is not None else (last or 0) + 10
        row = await connection.fetchrow(
            "INSERT INTO rules (id, tenant_id, position, enabled, description, match, action,"
            " lane, route, pool, hold_seconds)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            f" RETURNING {COLUMNS}",
            uuid.uuid4(),
            tenant,
            position,
            *_values(fields),
        )
    assert row is not None, "INSERT … RETURNING has a row"
    return _rule(row)


async def update_rule(
    pool: asyncpg.Pool, tenant_id: str, rule_id: str, changes: dict[str, Any]
) -> Rule | None:
    """Change the fields in ``changes`` (validated with the rest of the rule, as a new rule
    would be); None when the tenant has no such rule."""
    tenant, key = _tenant_key(tenant_id), _tenant_key(rule_id)
    if tenant is None or key is None:
        return None
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(
            f"SELECT {COLUMNS} FROM rules WHERE tenant_id = $1 AND id = $2 FOR UPDATE", tenant, key
        )
        if row is None:
            return None
        current = _rule(row).model_dump(include=set(RuleFields.model_fields))
        if "action" in changes:  # another action: the old one's parameter goes with it
            current = {k: v for k, v in current.items() if k not in ACTION_FIELD.values()}
        try:
            fields = RuleFields.model_validate(current | changes)
        except ValidationError as error:
            first = error.errors()[0]
            where = "".join(f"/{part}" for part in first["loc"])
            raise RuleRefused("invalid_request", first["msg"], where) from None
        await lock_routing(connection, tenant_id)
        await _checked(connection, tenant, fields)
        row = await connection.fetchrow(
            "UPDATE rules SET enabled = $3, description = $4, match = $5, action = $6,"
            " lane = $7, route = $8, pool = $9, hold_seconds = $10,"
            " position = coalesce($11, position), updated_at = now()"
            f" WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}",
            tenant,
            key,
            *_values(fields),
            fields.position,
        )
    assert row is not None, "the row is locked"
    return _rule(row)


async def remove_rule(pool: asyncpg.Pool, tenant_id: str, rule_id: str) -> Rule | None:
    """Delete a rule (messages it holds stay held); None when the tenant has no such rule."""
    statement = f"DELETE FROM rules WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    return await _one_rule(pool, tenant_id, rule_id, statement)


class RuleBook(BaseModel):
    """What policy-check reads for one tenant: its enabled rules in order, and how far its
    mail may be raised."""

    model_config = ConfigDict(frozen=True)

    ceiling: Lane = DEFAULT_PRIORITY_CEILING
    rules: tuple[Rule, ...] = ()

    def first_match(self, facts: MessageFacts) -> Rule | None:
        """The first enabled rule, in order, whose match fits a message with ``facts``."""
        for test, rule in self._tests:
            if test(facts):
                return rule
        return None

    @cached_property
    def _tests(self) -> tuple[tuple[Check, Rule], ...]:
        return tuple((rule.match.test, rule) for rule in self.rules if rule.enabled)


async def rule_books(pool: asyncpg.Pool, tenant_ids: list[str]) -> dict[str, RuleBook]:
    """The rule books of ``tenant_ids`` in one query (an unknown tenant: an empty book)."""
    keys = [key for tenant in tenant_ids if (key := _tenant_key(tenant)) is not None]
    rows = await pool.fetch(
        "SELECT t.id AS book, t.priority_ceiling, r.* FROM tenants t"
        " LEFT JOIN rules r ON r.tenant_id = t.id AND r.enabled"
        " WHERE t.id = ANY($1::uuid[])"
        " ORDER BY t.id, r.position, r.created_at, r.id",
        keys,
    )
    found: dict[str, list[Rule]] = {}
    ceilings: dict[str, Lane] = {}
    for row in rows:
        tenant = str(row["book"])
        ceilings[tenant] = Lane(row["priority_ceiling"])
        rules = found.setdefault(tenant, [])
        if row["id"] is not None:
            rules.append(_rule(row))
    return {
        tenant: RuleBook(
            ceiling=ceilings.get(tenant, DEFAULT_PRIORITY_CEILING),
            rules=tuple(found.get(tenant, ())),
        )
        for tenant in tenant_ids
    }
