"""The scrape endpoint and the runtime's per-batch counting (``libs.metrics``)."""

from __future__ import annotations

import dataclasses
import uuid
from urllib.request import urlopen

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from deploy.stack.pipeline import SERVICES, metrics_ports
from deploy.stack.profiles import PROFILES
from libs.metrics import ConsumerMetrics, exposition, serve_metrics


def test_each_service_gets_the_next_port_from_the_base_in_pipeline_order() -> None:
    assert list(metrics_ports(9400).items()) == [
        (name, 9400 + index) for index, name in enumerate(SERVICES)
    ]


def test_base_zero_turns_every_metrics_endpoint_off() -> None:
    assert set(metrics_ports(0).values()) == {0}


def test_no_metrics_port_collides_with_a_port_of_any_profile() -> None:
    taken: dict[int, str] = {}
    for profile in PROFILES.values():
        for field in dataclasses.fields(profile):
            value = getattr(profile, field.name)
            if field.name.endswith("_port") and field.name != "metrics_base_port":
                taken[value] = f"{profile.name}.{field.name}"
    for profile in PROFILES.values():
        for name, port in metrics_ports(profile.metrics_base_port).items():
            assert port not in taken, f"{profile.name} {name} {port} is {taken.get(port)}"
            taken[port] = f"{profile.name} metrics of {name}"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_batch_counts_what_was_handled_parked_and_skipped() -> None:
    role = uuid.uuid4().hex
    metrics = ConsumerMetrics("unit", role, "t", "bulk")
    labels = {"service": "unit", "role": role, "topic": "t", "lane": "bulk"}

    metrics.batch(records=10, skipped=3, parked=2, seconds=0.02)
    metrics.batch(records=4, skipped=0, parked=0, seconds=0.01)

    assert sample("sendarix_records_total", **labels, outcome="handled") == 5 + 4
    assert sample("sendarix_records_total", **labels, outcome="skipped") == 3
    assert sample("sendarix_records_total", **labels, outcome="parked") == 2
    batch = {"service": "unit", "role": role, "lane": "bulk"}
    assert sample("sendarix_batch_records_count", **batch) == 2
    assert sample("sendarix_batch_records_sum", **batch) == 14
    assert sample("sendarix_batch_duration_seconds_bucket", **batch, le="0.01") == 1


def test_the_exposition_is_the_text_format_unless_openmetrics_is_asked_for() -> None:
    ConsumerMetrics("unit", "exposition", "t", "").batch(1, 0, 0, 0.001)

    text, content_type = exposition(None)
    families = {family.name for family in text_string_to_metric_families(text.decode())}

    assert content_type.startswith("text/plain")
    assert {"sendarix_records", "sendarix_batch_duration_seconds"} <= families
    assert exposition("application/openmetrics-text")[1].startswith("application/openmetrics-text")


def test_the_scrape_endpoint_serves_the_registry_until_stopped() -> None:
    server = serve_metrics("127.0.0.1", 0)
    try:
        with urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as answer:
            body = answer.read().decode()
    finally:
        server.stop()

    assert "sendarix_records_total" in body
    assert server.server.fileno() == -1  # the port is released
