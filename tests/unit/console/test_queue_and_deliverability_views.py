"""What the queue and deliverability pages make of the API's answers: scopes in words, the
form fields a control sends, the per-domain table."""

from __future__ import annotations

from typing import Any

from services.console.pages_deliverability import by_domain
from services.console.pages_queues import by_stage, describe, duration, scope_of
from services.console.session import Session


def _session(operator: bool = False) -> Session:
    scopes = ("admin",)
    return Session("sx_key", "t-own", "acme", "support", scopes, operator, "csrf")


def test_a_scope_reads_as_words_without_the_viewers_own_tenant() -> None:
    tenant = _session()
    assert describe({"tenant_id": "t-own", "lane": "normal"}, tenant) == "lane normal"
    assert describe({"tenant_id": "t-own"}, tenant) == "all your mail"
    assert describe({}, tenant) == "all your mail"
    operator = _session(operator=True)
    assert describe({"tenant_id": "t-2", "site": "gmail"}, operator) == "tenant t-2, site gmail"
    assert describe({"lane": None}, operator) == "every tenant's mail"


def test_only_an_operator_names_a_tenant_and_empty_fields_are_left_out() -> None:
    form = {"csrf": "x", "tenant_id": "t-2", "lane": "bulk", "route": " ", "site": " gmail "}
    fields = ("tenant_id", "lane", "route", "site")
    assert scope_of(form, fields, _session()) == {"lane": "bulk", "site": "gmail"}
    assert scope_of(form, fields, _session(operator=True)) == {
        "tenant_id": "t-2",
        "lane": "bulk",
        "site": "gmail",
    }


def test_waits_read_in_ms_under_a_second() -> None:
    assert duration(0.25) == "250 ms"
    assert duration(12.34) == "12.3 s"


def _bucket(domain: str | None, **counts: int) -> dict[str, Any]:
    return {
        "start": "2026-11-30T00:00:00Z",
        "group": {"recipient_domain": domain},
        "counts": counts,
    }


def test_the_domain_table_sums_the_buckets_and_rates_them() -> None:
    report = {
        "buckets": [
            _bucket("gmail.com", delivered=3, bounced=1),
            _bucket("gmail.com", delivered=5, bounced=1),
            _bucket("example.org", delivered=20),
            _bucket(None, deferred=1),
        ]
    }
    rows = by_domain(report)
    assert [row["domain"] for row in rows] == ["example.org", "gmail.com", "(unknown)"]
    gmail = rows[1]
    assert gmail["counts"] == {"delivered": 8, "bounced": 2}
    assert gmail["rates"]["bounce"] == 0.2
    assert rows[2]["rates"]["delivery"] is None


def test_stage_depths_read_as_a_table_of_stages_by_lane_in_pipeline_order() -> None:
    depths = [
        {"stage": stage, "lane": lane, "depth": n}
        for n, (stage, lane) in enumerate(
            [("intake", "critical"), ("intake", "bulk"), ("retry", "critical")]
        )
    ]
    table = by_stage(depths)
    assert list(table) == ["intake", "retry"]
    assert table["intake"]["bulk"]["depth"] == 1
    assert "bulk" not in table["retry"]
