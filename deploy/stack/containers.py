"""The test infrastructure as containers, on hosts where a Docker engine answers.

The images are docker-compose.yml's, bound to the profile's ports on the host, so the tests see
no difference from local processes. Jaeger and Zipkin share the host's network, as they reach
the broker where the host does (it advertises a loopback address) and bind loopback themselves.
Testcontainers' reaper removes the containers even when the test process dies.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import docker
from testcontainers.community.postgres import PostgresContainer
from testcontainers.core.container import DockerContainer

from deploy.stack.console import say
from deploy.stack.probes import READY
from deploy.stack.processes import passes, run_to_completion, wait_until
from deploy.stack.profiles import Profile
from deploy.stack.traces import create_traces_topic, jaeger_env, zipkin_env
from libs.settings import REPO_ROOT

IMAGES = {
    "postgres": "postgres:15",
    "kafka": "apache/kafka:4.1.1",
    "jaeger": "jaegertracing/jaeger:2.13.0",
    "zipkin": "openzipkin/zipkin:3.5.1",
    "mailpit": "axllent/mailpit:v1.33.1",
}
"""The image of each component (docker-compose.yml uses the same)."""


def docker_answers() -> bool:
    """Whether a Docker engine is reachable from here."""
    try:
        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


def _kafka(profile: Profile) -> DockerContainer:
    """A single-node KRaft broker listening on the same port inside and out."""
    port = profile.kafka_port
    settings = {
        "NODE_ID": "1",
        "PROCESS_ROLES": "broker,controller",
        "LISTENERS": f"PLAINTEXT://:{port},CONTROLLER://:9093",
        "ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{port}",
        "CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "AUTO_CREATE_TOPICS_ENABLE": "false",
    }
    container = DockerContainer(IMAGES["kafka"]).with_bind_ports(port, port)
    return container.with_envs(**{f"KAFKA_{name}": value for name, value in settings.items()})


def _postgres(profile: Profile) -> DockerContainer:
    container = PostgresContainer(
        IMAGES["postgres"], username="sendarix", password="sendarix", dbname="sendarix"
    )
    container.with_env("POSTGRES_HOST_AUTH_METHOD", "trust")
    container.with_bind_ports(5432, profile.postgres_port)
    if not profile.durable:
        container.with_command("postgres -c fsync=off -c synchronous_commit=off")
    return container


def _jaeger(profile: Profile) -> DockerContainer:
    """Jaeger with the local stack's configuration: its ports, and its copy of every span to
    the traces topic."""
    container = (
        DockerContainer(IMAGES["jaeger"])
        .with_kwargs(network_mode="host")
        .with_volume_mapping(str(REPO_ROOT / "deploy" / "jaeger"), "/etc/sendarix", "ro")
        .with_command("--config /etc/sendarix/config.yaml")
    )
    return container.with_envs(**jaeger_env(profile))


def _zipkin(profile: Profile) -> DockerContainer:
    container = DockerContainer(IMAGES["zipkin"]).with_kwargs(network_mode="host")
    container.with_command(
        f"--armeria.ports[0].ip=127.0.0.1 --armeria.ports[0].port={profile.zipkin_port}"
        " --armeria.ports[0].protocols[0]=http"
    )
    return container.with_envs(**zipkin_env(profile), JAVA_OPTS="-Xms64m -Xmx384m")


def _mailpit(profile: Profile) -> DockerContainer:
    return (
        DockerContainer(IMAGES["mailpit"])
        .with_bind_ports(1025, profile.mailpit_smtp_port)
        .with_bind_ports(8025, profile.mailpit_ui_port)
    )


CONTAINERS = {
    "postgres": _postgres,
    "kafka": _kafka,
    "jaeger": _jaeger,
    "zipkin": _zipkin,
    "mailpit": _mailpit,
}


async def _all_ready(profile: Profile, names: list[str]) -> None:
    for name in names:
        await wait_until(partial(passes, partial(READY[name], profile)), 120, name)


@contextmanager
def infra_containers(profile: Profile, names: list[str]) -> Iterator[None]:
    """Run the named components as containers until the block ends, then remove them."""
    started: list[DockerContainer] = []
    try:
        for name in names:
            say(f"starting {name} in a container ({IMAGES[name]})")
            started.append(CONTAINERS[name](profile).start())
        run_to_completion(_all_ready(profile, names))
        run_to_completion(create_traces_topic(profile))
        yield
    finally:
        for container in reversed(started):
            container.stop()
