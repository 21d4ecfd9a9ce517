"""The way spans reach the tracing UI: services export OTLP to Jaeger, Jaeger copies every span
onto a Kafka topic in Zipkin's JSON, and Zipkin's Kafka collector reads it.

Shared by the local processes (``infra``) and the test containers (``containers``).
"""

from __future__ import annotations

from functools import partial

from aiokafka.admin import NewTopic

from deploy.stack.probes import kafka_ready
from deploy.stack.processes import passes, wait_until
from deploy.stack.profiles import Profile
from libs.broker import ensure_topic

TRACES_TOPIC = "sendarix.traces.zipkin"
ZIPKIN_MAX_SPANS = 100_000
"""Zipkin keeps spans in memory: this many fit its 384 MB heap with room to spare."""


def jaeger_env(profile: Profile) -> dict[str, str]:
    """What deploy/jaeger/config.yaml reads: its ports, and the broker and topic of its copy."""
    ports = {
        "JAEGER_UI_PORT": profile.jaeger_ui_port,
        "JAEGER_QUERY_GRPC_PORT": profile.jaeger_query_grpc_port,
        "JAEGER_HEALTH_PORT": profile.jaeger_health_port,
        "JAEGER_OTLP_GRPC_PORT": profile.otlp_grpc_port,
        "JAEGER_OTLP_HTTP_PORT": profile.otlp_http_port,
    }
    return {name: str(port) for name, port in ports.items()} | {
        "JAEGER_KAFKA_BROKER": f"127.0.0.1:{profile.kafka_port}",
        "JAEGER_ZIPKIN_TOPIC": TRACES_TOPIC,
    }


def zipkin_env(profile: Profile) -> dict[str, str]:
    """Zipkin's settings: its port, the topic it reads (a consumer group per profile, as the
    profiles may share a broker) and how much it keeps."""
    return {
        "QUERY_PORT": str(profile.zipkin_port),
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{profile.kafka_port}",
        "KAFKA_TOPIC": TRACES_TOPIC,
        "KAFKA_GROUP_ID": f"zipkin-{profile.name}",
        "MEM_MAX_SPANS": str(ZIPKIN_MAX_SPANS),
    }


async def create_traces_topic(profile: Profile) -> None:
    """The topic from Jaeger to Zipkin (one partition keeps Zipkin's reading simple), as soon
    as the broker answers, whether this stack started it or found it running."""
    await wait_until(partial(passes, partial(kafka_ready, profile)), 180, "kafka")
    await ensure_topic(f"127.0.0.1:{profile.kafka_port}", NewTopic(TRACES_TOPIC, 1, 1))
