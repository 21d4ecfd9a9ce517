"""Who may pause, drain, retry or cancel what: the scope rules of ``libs.queue_controls``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from libs.keys import ApiKey, KeySettings
from libs.keys import Scope as KeyScope
from libs.queue_controls import (
    ControlKind,
    Scope,
    ScopeRefused,
    WaitingScope,
    check_control,
    is_operator,
    scoped_for,
)
from libs.settings import Settings
from libs.tenants import Caller, Tenant
from schemas.common import Lane

MINE = str(uuid.uuid4())
THEIRS = str(uuid.uuid4())


def caller(tenant_name: str, *scopes: KeyScope) -> Caller:
    tenant = Tenant(id=MINE, name=tenant_name, domains=("example.test",))
    key = ApiKey(
        id=str(uuid.uuid4()),
        tenant_id=MINE,
        prefix="sx_",
        settings=KeySettings(scopes=frozenset(scopes)),
        created_at=datetime.now(UTC),
        expires_at=None,
        revoked_at=None,
        last_used_at=None,
    )
    return Caller(tenant, key)


def test_an_admin_key_of_the_operator_tenant_is_an_operator_by_name_or_id() -> None:
    settings = Settings(operator_tenant="ops")
    assert is_operator(caller("ops", KeyScope.ADMIN, KeyScope.READ), settings)
    assert not is_operator(caller("ops", KeyScope.READ), settings)
    assert not is_operator(caller("acme", KeyScope.ADMIN), settings)
    assert is_operator(caller("acme", KeyScope.ADMIN), Settings(operator_tenant=MINE))


def test_a_tenant_acts_within_its_own_tenant_whatever_it_names() -> None:
    lane = Scope(lane=Lane.BULK, site="gmail.com")
    assert scoped_for(lane, MINE) == Scope(tenant_id=MINE, lane=Lane.BULK, site="gmail.com")
    assert scoped_for(Scope(tenant_id=MINE), MINE) == Scope(tenant_id=MINE)
    waiting = scoped_for(WaitingScope(domain="Example.ORG"), MINE)
    assert waiting == WaitingScope(tenant_id=MINE, domain="example.org")


def test_a_tenant_naming_another_tenant_is_refused_and_an_operator_is_not() -> None:
    with pytest.raises(ScopeRefused) as refused:
        scoped_for(Scope(tenant_id=THEIRS), MINE)
    assert refused.value.code == "operator_only"
    assert scoped_for(Scope(tenant_id=THEIRS), None) == Scope(tenant_id=THEIRS)
    assert scoped_for(Scope(lane=Lane.NORMAL), None) == Scope(lane=Lane.NORMAL)


@pytest.mark.parametrize(
    ("kind", "scope", "code"),
    [
        (ControlKind.DRAIN, Scope(tenant_id=MINE), "drain_needs_route"),
        (ControlKind.DRAIN, Scope(), "drain_needs_route"),
        (ControlKind.PAUSE, Scope(), "empty_scope"),
    ],
)
def test_a_badly_made_control_is_refused(kind: ControlKind, scope: Scope, code: str) -> None:
    with pytest.raises(ScopeRefused) as refused:
        check_control(kind, scope)
    assert refused.value.code == code


def test_a_control_naming_something_passes() -> None:
    check_control(ControlKind.PAUSE, Scope(lane=Lane.BULK))
    check_control(ControlKind.DRAIN, Scope(route="relay-eu"))
