"""Analytics and deliverability alerts through the whole topology: 200 messages to an address
that bounces raise the tenant's bounce-rate alert once — in the API, as one notice on
``sendarix.notices``, as one signed post to the tenant's webhook and in the analytics service's
``sendarix_alerts_open`` gauge — and the analytics count 200 bounces."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from standardwebhooks import Webhook

from deploy.stack.pipeline import metrics_ports
from deploy.stack.profiles import TEST
from libs.tenants import Tenant
from libs.topics import NOTICES, public_topic
from tests.e2e.conftest import ALERT_EVALUATION_SECONDS, Topology
from tests.support import TopicTap, eventually, scrape, serving_webhooks

pytestmark = pytest.mark.e2e

MESSAGES = 200


async def test_bouncing_mail_raises_the_bounce_rate_alert_once(
    topology: Topology, tenant: tuple[Tenant, str]
) -> None:
    tenant_row, api_key = tenant
    auth = {"Authorization": f"Bearer {api_key}"}
    notices = public_topic(NOTICES, topology.settings.topic_prefix)
    async with TopicTap(topology.settings, notices) as tap, serving_webhooks() as receiver:
        name, url = receiver.url()
        hook = {"url": url, "event_types": ["sendarix.alert.opened", "sendarix.alert.resolved"]}
        created = await topology.http.post("/v1/webhooks", json=hook, headers=auth)
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        batch = {
            "messages": [
                {
                    "from": "alerts@example.test",
                    "to": f"bounce+{n}@simulator.sendarix.test",
                    "subject": f"Bounce {n}",
                    "text": "Hello",
                    "category": "notification",
                }
                for n in range(MESSAGES)
            ]
        }
        sent = await topology.http.post("/v1/messages/batch", json=batch, headers=auth)
        assert sent.status_code == 200, sent.text
        assert [r["status"] for r in sent.json()["results"]] == [202] * MESSAGES

        async def counted() -> dict[str, Any] | None:
            answer = await topology.http.get("/v1/analytics", headers=auth)
            assert answer.status_code == 200, answer.text
            report: dict[str, Any] = answer.json()
            return report if report["totals"]["counts"]["bounced"] >= MESSAGES else None

        report = await eventually(counted, timeout=120, every=0.5)

        async def open_alert() -> dict[str, Any] | None:
            answer = await topology.http.get("/v1/analytics/alerts", headers=auth)
            assert answer.status_code == 200, answer.text
            found = [a for a in answer.json()["alerts"] if a["kind"] == "bounce_rate"]
            return found[0] if found else None

        alert = await eventually(open_alert, timeout=30)
        opened_at = datetime.fromisoformat(alert["opened_at"])

        async def evaluated_twice_more() -> dict[str, Any] | None:
            again = await open_alert()
            assert again is not None, "the alert resolved"
            evaluated = datetime.fromisoformat(again["evaluated_at"])
            seconds = (evaluated - opened_at).total_seconds()
            return again if seconds >= 2 * ALERT_EVALUATION_SECONDS else None

        await eventually(evaluated_twice_more, timeout=30)
        await tap.wait_for(lambda v: v["subject"] == alert["id"], timeout=30)
        await eventually(lambda: _posted(receiver.posts[name]), timeout=30)
        metrics = f"http://127.0.0.1:{metrics_ports(TEST.metrics_base_port)['analytics']}/metrics"
        gauge = await scrape(metrics)

    every = await topology.http.get("/v1/analytics/alerts?status=all", headers=auth)
    assert [a["kind"] for a in every.json()["alerts"]] == ["bounce_rate"]
    assert alert["severity"] == "critical" and alert["sample"] >= 100
    opened = [
        v
        for v in tap.json_values()
        if v["type"] == "sendarix.alert.opened" and v["data"]["tenant_id"] == tenant_row.id
    ]
    assert [(v["subject"], v["data"]["kind"]) for v in opened] == [(alert["id"], "bounce_rate")]
    assert report["totals"]["counts"]["bounced"] == MESSAGES
    assert report["totals"]["counts"]["delivered"] == 0
    assert report["totals"]["rates"]["bounce"] == 1.0
    [(headers, body)] = receiver.posts[name]
    posted = Webhook(secret).verify(body, headers)
    assert (posted["type"], posted["subject"]) == ("sendarix.alert.opened", alert["id"])
    assert headers["webhook-id"] == opened[0]["id"]
    labels = frozenset(
        {"tenant": tenant_row.id, "kind": "bounce_rate", "severity": "critical"}.items()
    )
    assert gauge[("sendarix_alerts_open", labels)] == 1


async def _posted(posts: list[tuple[dict[str, str], bytes]]) -> bool | None:
    return True if posts else None
