"""docker-compose.yml runs the topology of ``make run``, configured the way ``make run`` does."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from deploy.stack.containers import IMAGES
from deploy.stack.pipeline import SERVICES, SIMULATOR, SIMULATOR_MODULE, child_env, metrics_ports
from deploy.stack.profiles import DEV
from deploy.stack.traces import TRACES_TOPIC, jaeger_env, zipkin_env
from libs.settings import REPO_ROOT, Settings

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
CONTAINERS: dict[str, dict[str, Any]] = COMPOSE["services"]

SENDARIX_CONTAINERS = {
    name: container
    for name, container in CONTAINERS.items()
    if container.get("image") == CONTAINERS["ingest"]["image"]
}
"""Every container running our image: the services, the simulator, the one-shot init."""

PEER_ADDRESSES = (
    "kafka_bootstrap",
    "database_url",
    "otlp_endpoint",
    "relay_host",
    "simulator_host",
    "feedback_host",
)
"""The settings through which a Sendarix process reaches another component."""


@pytest.fixture(autouse=True)
def _no_sendarix_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings must come from code and compose here, not from the shell running the tests."""
    for name in list(os.environ):
        if name.startswith("SENDARIX_"):
            monkeypatch.delenv(name)


def _settings_of(container: dict[str, Any]) -> Settings:
    environment: dict[str, str] = container.get("environment", {})
    fields = {name.removeprefix("SENDARIX_").lower(): value for name, value in environment.items()}
    return Settings.model_validate(fields)


def test_every_process_of_make_run_has_its_container() -> None:
    expected = {**SERVICES, SIMULATOR: SIMULATOR_MODULE}

    commands = {name: CONTAINERS.get(name, {}).get("command") for name in expected}

    assert commands == {name: ["python", "-m", module] for name, module in expected.items()}


def test_containers_get_every_setting_make_run_changes() -> None:
    defaults = Settings.model_construct().as_env()
    changed = {
        name
        for name, value in child_env(DEV.settings()).items()
        if name.startswith("SENDARIX_") and defaults.get(name) != value
    }
    assert changed  # the comparison below would pass vacuously otherwise

    for name, container in SENDARIX_CONTAINERS.items():
        assert changed <= set(container["environment"]), name


def test_every_sendarix_variable_is_a_setting() -> None:
    known = set(Settings.model_construct().as_env())

    for name, container in SENDARIX_CONTAINERS.items():
        assert set(container["environment"]) <= known, name


def test_containers_reach_their_peers_by_service_name() -> None:
    for name, container in SENDARIX_CONTAINERS.items():
        settings = _settings_of(container)
        for field in PEER_ADDRESSES:
            if name == "feedback" and field == "feedback_host":
                continue  # the listener itself listens on every interface
            address = str(getattr(settings, field))
            host = urlsplit(address if "//" in address else f"//{address}").hostname
            assert host in CONTAINERS, f"{name}: {field}={address}"


def test_the_gateway_listens_beyond_its_container() -> None:
    assert _settings_of(CONTAINERS["ingest"]).http_host == "0.0.0.0"
    assert _settings_of(CONTAINERS["feedback"]).feedback_host == "0.0.0.0"
    assert _settings_of(CONTAINERS["console"]).console_host == "0.0.0.0"


def test_the_console_calls_the_gateway_and_jaeger_by_service_name() -> None:
    settings = _settings_of(CONTAINERS["console"])
    for address in (settings.internal_gateway_url, settings.jaeger_ui_url):
        assert urlsplit(address).hostname in CONTAINERS, address


def test_infrastructure_images_are_those_of_the_test_containers() -> None:
    assert {name: CONTAINERS[name]["image"] for name in IMAGES} == IMAGES


def test_the_host_sees_the_ports_of_make_run() -> None:
    published = {
        int(mapping.split(":")[-2])
        for container in CONTAINERS.values()
        for mapping in container.get("ports", [])
    }

    assert {
        DEV.http_port,
        DEV.smtp_submission_port,
        DEV.kafka_port,
        DEV.postgres_port,
        DEV.jaeger_ui_port,
        DEV.otlp_http_port,
        DEV.zipkin_port,
        DEV.mailpit_ui_port,
        DEV.feedback_port,
        DEV.console_port,
    } <= published


def test_each_service_serves_metrics_on_its_make_run_port_published() -> None:
    for name, port in metrics_ports(DEV.metrics_base_port).items():
        container = CONTAINERS[name]
        assert _settings_of(container).metrics_port == port, name
        assert _settings_of(container).metrics_host == "0.0.0.0", name
        assert f"127.0.0.1:{port}:{port}" in container["ports"], name


def test_the_prometheus_example_scrapes_every_service_of_make_run() -> None:
    config = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus.yml").read_text())
    targets = {
        group["labels"]["process"]: group["targets"]
        for job in config["scrape_configs"]
        for group in job["static_configs"]
    }

    assert targets == {
        name: [f"127.0.0.1:{port}"] for name, port in metrics_ports(DEV.metrics_base_port).items()
    }


def test_jaeger_copies_spans_to_the_topic_zipkin_reads_as_make_run_does() -> None:
    jaeger = CONTAINERS["jaeger"]["environment"]
    zipkin = CONTAINERS["zipkin"]["environment"]
    created = CONTAINERS["traces-topic"]["command"]

    assert set(jaeger) == set(jaeger_env(DEV)) | {"JAEGER_LISTEN_HOST"}
    assert set(zipkin) == set(zipkin_env(DEV)) - {"QUERY_PORT"} | {"JAVA_OPTS"}
    assert jaeger["JAEGER_ZIPKIN_TOPIC"] == zipkin["KAFKA_TOPIC"] == TRACES_TOPIC
    assert f"--topic={TRACES_TOPIC}" in created
    assert jaeger["JAEGER_KAFKA_BROKER"] == zipkin["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:29092"
    assert CONTAINERS["jaeger"]["command"] == ["--config", "/etc/sendarix/config.yaml"]
    assert CONTAINERS["jaeger"]["volumes"] == ["./deploy/jaeger:/etc/sendarix:ro"]
