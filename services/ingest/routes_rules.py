"""``/v1/rules``: a tenant's rules, read in order by policy-check (``libs.rules``).

Always the caller's tenant's rules: another tenant's rule is not found (404). Reading needs the
``read`` scope, writing ``admin``. A rule that would raise mail to a lane it does not earn or
put it in the security pool is refused (422 ``lane_not_allowed`` / ``pool_not_allowed``), and so
is one that names a route or pool the tenant does not have (``unknown_route`` / ``unknown_pool``).
Policy-check applies a change within ``services.policy_check.rule_cache.RULES_TTL_SECONDS``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from libs import rules
from libs.ip_pools import Name
from libs.rules import Description, Rule, RuleAction, RuleFields, RuleMatch, RuleRefused
from schemas.common import Lane
from services.ingest.http_deps import AdminCaller, IngestDep, ReadCaller, parsed_body, problems
from services.ingest.problems import ProblemError
from services.ingest.routes_keys import json_body_doc
from services.ingest.validate import Violation

router = APIRouter(prefix="/v1/rules", tags=["rules"])

CLEARABLE = frozenset({"position", "lane", "route", "pool", "hold_seconds"})
"""Fields a patch may set to null (position: keep where it is)."""


class RulePatch(BaseModel):
    """``PATCH /v1/rules/{id}``: only the fields given change; the rule is checked again whole.
    Changing ``action`` drops the old action's parameter."""

    model_config = ConfigDict(extra="forbid")

    description: Description | None = None
    enabled: bool | None = None
    position: int | None = Field(None, ge=0, le=1_000_000)
    match: RuleMatch | None = None
    action: RuleAction | None = None
    lane: Lane | None = None
    route: Name | None = None
    pool: Name | None = None
    hold_seconds: int | None = None

    def changes(self) -> dict[str, Any]:
        given = self.model_dump(include=self.model_fields_set)
        return {k: v for k, v in given.items() if v is not None or k in CLEARABLE}


class RuleList(BaseModel):
    """A tenant's rules in the order policy-check reads them (the first that matches wins)."""

    rules: list[Rule]


def _refused(error: RuleRefused) -> ProblemError:
    violations = [Violation(error.code, error.field, error.detail)] if error.field else []
    return ProblemError(error.code, error.detail, violations)


async def _found(rule_id: str, change: Awaitable[Rule | None]) -> Rule:
    """What a look-up or change of one rule returned: 404 when the tenant has no such rule."""
    try:
        result = await change
    except RuleRefused as error:
        raise _refused(error) from error
    if result is None:
        raise ProblemError("not_found", f"no rule {rule_id!r}")
    return result


@router.get("", response_model=RuleList, responses=problems(401, 403), summary="List rules")
async def list_rules(ingest: IngestDep, caller: ReadCaller) -> RuleList:
    """Every rule of the tenant, enabled or not, in the order they are read."""
    return RuleList(rules=await rules.list_rules(ingest.pool, caller.tenant.id))


@router.post(
    "",
    status_code=201,
    response_model=Rule,
    responses=problems(400, 401, 403, 409, 415, 422),
    summary="Add a rule (after the others unless it has a position)",
    openapi_extra=json_body_doc(RuleFields),
)
async def create_rule(request: Request, ingest: IngestDep, caller: AdminCaller) -> Rule:
    body = await parsed_body(request, RuleFields)
    try:
        return await rules.add_rule(ingest.pool, caller.tenant.id, body)
    except RuleRefused as error:
        raise _refused(error) from error


@router.get("/{rule_id}", response_model=Rule, responses=problems(401, 403, 404), summary="A rule")
async def get_rule(rule_id: str, ingest: IngestDep, caller: ReadCaller) -> Rule:
    return await _found(rule_id, rules.get_rule(ingest.pool, caller.tenant.id, rule_id))


@router.patch(
    "/{rule_id}",
    response_model=Rule,
    responses=problems(400, 401, 403, 404, 415, 422),
    summary="Change a rule",
    openapi_extra=json_body_doc(RulePatch),
)
async def patch_rule(
    rule_id: str, request: Request, ingest: IngestDep, caller: AdminCaller
) -> Rule:
    body = await parsed_body(request, RulePatch)
    change = rules.update_rule(ingest.pool, caller.tenant.id, rule_id, body.changes())
    return await _found(rule_id, change)


@router.delete(
    "/{rule_id}", response_model=Rule, responses=problems(401, 403, 404), summary="Remove a rule"
)
async def delete_rule(rule_id: str, ingest: IngestDep, caller: AdminCaller) -> Rule:
    """The rule stops applying; the messages it holds stay held until released or expired."""
    return await _found(rule_id, rules.remove_rule(ingest.pool, caller.tenant.id, rule_id))
