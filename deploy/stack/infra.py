"""The infrastructure of one profile: PostgreSQL, Kafka, Jaeger, Zipkin and Mailpit, started and
checked.

Locally each component is a child of a :class:`Supervisor`, keeping its data under
``.state/<profile>/``. Where a Docker engine answers, the test fixture uses containers instead.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import stat
import string
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from deploy.stack import containers, tools
from deploy.stack.console import say
from deploy.stack.probes import (
    jaeger_ready,
    kafka_ready,
    mailpit_ready,
    postgres_ready,
    zipkin_ready,
)
from deploy.stack.processes import StartupError, Supervisor, listening, run_to_completion
from deploy.stack.profiles import Profile
from deploy.stack.traces import create_traces_topic, jaeger_env, zipkin_env
from libs.settings import REPO_ROOT

KAFKA_PROPERTIES = REPO_ROOT / "deploy" / "kafka" / "server.properties"
KAFKA_LOG4J = REPO_ROOT / "deploy" / "kafka" / "log4j2.yaml"
JAEGER_CONFIG = REPO_ROOT / "deploy" / "jaeger" / "config.yaml"
SHARED_DATA_ROOT = Path("/var/lib/sendarix")
"""Where PostgreSQL data goes when the repository is out of the postgres account's reach."""


def infra_ports(profile: Profile) -> dict[str, int]:
    """The port that tells whether each component is up."""
    return {
        "postgres": profile.postgres_port,
        "kafka": profile.kafka_port,
        "jaeger": profile.otlp_http_port,
        "zipkin": profile.zipkin_port,
        "mailpit": profile.mailpit_smtp_port,
    }


def _require_free(component: str, *ports: int) -> None:
    """Fail clearly, before starting, when another process holds a port the component binds."""
    taken = [str(port) for port in ports if listening(port)]
    if taken:
        raise StartupError(
            f"{component} cannot start: 127.0.0.1:{', '.join(taken)} already in use by another"
            " process (another stack, or a profile sharing ports?)"
        )


def _as_postgres_owner() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as the ``postgres`` account."""
    return "postgres" if os.geteuid() == 0 else None


async def start_postgres(profile: Profile, supervisor: Supervisor) -> None:
    """A project-local PostgreSQL cluster with a ``sendarix`` database, trusted on loopback."""
    bin_dir = tools.postgres_bin()
    owner = _as_postgres_owner()
    data = postgres_data_dir(profile, owner)
    if not (data / "PG_VERSION").exists():
        say(f"creating the PostgreSQL cluster in {data}")
        shutil.rmtree(data, ignore_errors=True)  # what an interrupted initdb left, if anything
        data.mkdir(parents=True, mode=0o700)
        initdb: list[str | Path] = [
            bin_dir / "initdb",
            "-D",
            data,
            "-U",
            "sendarix",
            "--auth=trust",
            "-E",
            "UTF8",
        ]
        initdb += ["--locale=C"] if profile.durable else ["--locale=C", "--no-sync"]
        if owner:
            _hand_over(data, owner)
        await asyncio.to_thread(
            tools.run_logged, initdb, supervisor.log_path("postgres"), user=owner
        )
    _require_free("postgres", profile.postgres_port)
    options = ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="]
    if not profile.durable:
        options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    supervisor.start(
        "postgres",
        [bin_dir / "postgres", "-D", data, "-p", str(profile.postgres_port), *options],
        stop_signal=signal.SIGINT,  # "fast" shutdown: SIGTERM would wait for every client
        user=owner,
    )
    await supervisor.wait_ready("postgres", probe=lambda: postgres_ready(profile), within=60)


def _reachable_by(path: Path, account: str) -> bool:
    """Whether ``account`` can enter every existing folder above ``path``."""
    uid = pwd.getpwnam(account).pw_uid
    for folder in reversed(path.parents):
        if folder.exists():
            mode = folder.stat()
            if mode.st_uid != uid and not mode.st_mode & stat.S_IXOTH:
                return False
    return True


def postgres_data_dir(profile: Profile, owner: str | None) -> Path:
    """Where the cluster keeps its data: the state folder, unless its owner cannot reach it.

    As root the cluster runs as ``postgres``, which cannot enter a repository kept under a
    private folder (``/root`` is mode 700); then the data goes to ``/var/lib/sendarix``, one
    folder per repository and profile.
    """
    preferred = profile.state_dir / "postgres"
    if owner is None or _reachable_by(preferred, owner):
        return preferred
    digest = hashlib.sha256(str(REPO_ROOT).encode()).hexdigest()[:10]
    fallback = SHARED_DATA_ROOT / f"{profile.name}-{digest}" / "postgres"
    say(f"{owner} cannot reach {preferred}; keeping the PostgreSQL data in {fallback}")
    return fallback


def _hand_over(data: Path, account: str) -> None:
    """Give ``account`` the data folder."""
    entry = pwd.getpwnam(account)
    os.chown(data, entry.pw_uid, entry.pw_gid)


def _cluster_id() -> str:
    """A new KRaft cluster id: 16 random bytes, base64url without padding.

    Like Kafka's own ``random-uuid``, never one that starts with ``-``: the storage tool would
    read it as an option.
    """
    while True:
        candidate = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


async def start_kafka(profile: Profile, supervisor: Supervisor) -> None:
    """A single-node Kafka broker in KRaft mode, formatted on first start (every start for a
    profile that is not durable)."""
    jars = tools.kafka_jars()
    tools.require_commands("java")
    home = profile.state_dir / "kafka"
    data = home / "data"
    home.mkdir(parents=True, exist_ok=True)
    properties = home / "server.properties"
    properties.write_text(
        string.Template(KAFKA_PROPERTIES.read_text()).substitute(
            broker_port=profile.kafka_port,
            controller_port=profile.kafka_controller_port,
            log_dir=data,
        )
    )
    java = [
        "java",
        "-cp",
        f"{jars}/*",
        f"-Dlog4j2.configurationFile={KAFKA_LOG4J}",
        f"-Dkafka.logs.dir={supervisor.log_dir / 'kafka'}",
    ]
    if not profile.durable and data.exists():
        # The test and bench brokers hold only the topics of earlier runs (tens of thousands of
        # partitions after a day of test runs, minutes of start-up): each start begins empty.
        say(f"emptying the scratch Kafka log directory {data}")
        await asyncio.to_thread(shutil.rmtree, data)
    if not (data / "meta.properties").exists():
        say(f"formatting the Kafka log directory {data}")
        await asyncio.to_thread(
            tools.run_logged,
            [
                *java,
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                _cluster_id(),
                "-c",
                properties,
                "-g",
            ],
            supervisor.log_path("kafka"),
        )
    _require_free("kafka", profile.kafka_port, profile.kafka_controller_port)
    supervisor.start("kafka", [java[0], "-Xms256m", "-Xmx1g", *java[1:], "kafka.Kafka", properties])
    await supervisor.wait_ready("kafka", probe=lambda: kafka_ready(profile), within=120)


async def start_jaeger(profile: Profile, supervisor: Supervisor) -> None:
    """Jaeger v2 with in-memory storage: OTLP in, the query API out, and a copy of every span
    onto the traces topic for Zipkin (the exporter retries until the broker has the topic)."""
    binary = tools.jaeger_binary()
    settings = jaeger_env(profile)
    _require_free("jaeger", *(int(v) for k, v in settings.items() if k.endswith("_PORT")))
    supervisor.start("jaeger", [binary, "--config", JAEGER_CONFIG], env=os.environ | settings)
    await supervisor.wait_ready("jaeger", probe=lambda: jaeger_ready(profile), within=60)


async def start_zipkin(profile: Profile, supervisor: Supervisor) -> None:
    """Zipkin, the tracing UI: reads the spans Jaeger copies onto the traces topic, keeps the
    latest in memory and serves its UI and API on loopback."""
    jar = tools.zipkin_jar()
    tools.require_commands("java")
    port = profile.zipkin_port
    env = {**os.environ, **zipkin_env(profile)}
    argv: list[str | Path] = [
        "java",
        "-Xms64m",
        "-Xmx384m",
        "-jar",
        jar,
        "--armeria.ports[0].ip=127.0.0.1",
        f"--armeria.ports[0].port={port}",
        "--armeria.ports[0].protocols[0]=http",
    ]
    _require_free("zipkin", port)
    supervisor.start("zipkin", argv, env=env)
    await supervisor.wait_ready("zipkin", probe=lambda: zipkin_ready(profile), within=120)


async def start_mailpit(profile: Profile, supervisor: Supervisor) -> None:
    """Mailpit, catching the mail of the default route; kept across restarts when durable."""
    binary = tools.mailpit_binary()
    argv: list[str | Path] = [
        binary,
        "--smtp",
        f"127.0.0.1:{profile.mailpit_smtp_port}",
        "--listen",
        f"127.0.0.1:{profile.mailpit_ui_port}",
    ]
    if profile.durable:
        argv += ["--database", profile.state_dir / "mailpit.db"]
    _require_free("mailpit", profile.mailpit_smtp_port, profile.mailpit_ui_port)
    supervisor.start("mailpit", argv)
    await supervisor.wait_ready("mailpit", probe=lambda: mailpit_ready(profile), within=60)


STARTERS: dict[str, Callable[[Profile, Supervisor], Coroutine[Any, Any, None]]] = {
    "postgres": start_postgres,
    "kafka": start_kafka,
    "jaeger": start_jaeger,
    "zipkin": start_zipkin,
    "mailpit": start_mailpit,
}

INSTALLERS: dict[str, Callable[[], object]] = {
    "postgres": tools.postgres_bin,
    "kafka": tools.kafka_jars,
    "jaeger": tools.jaeger_binary,
    "zipkin": tools.zipkin_jar,
    "mailpit": tools.mailpit_binary,
}


def missing_components(profile: Profile) -> list[str]:
    """The components of ``profile`` that nothing listens for yet (the rest are reused)."""
    missing = []
    for name, port in infra_ports(profile).items():
        if listening(port):
            say(f"{name} already listens on 127.0.0.1:{port}; leaving it as it is")
        else:
            missing.append(name)
    return missing


def install_missing(profile: Profile) -> list[str]:
    """Install what the components of ``profile`` that are not running need; return those."""
    missing = missing_components(profile)
    for name in missing:
        INSTALLERS[name]()
    return missing


async def start_infra(profile: Profile, supervisor: Supervisor) -> list[str]:
    """Start every component not running yet, all at once; return the ones started.

    Everything is installed first, so that no readiness wait runs down during a long build.
    """
    missing = install_missing(profile)
    if missing:
        say(f"starting {', '.join(missing)} (logs in {supervisor.log_dir})")
    try:
        async with asyncio.TaskGroup() as group:
            for name in missing:
                group.create_task(STARTERS[name](profile, supervisor))
            group.create_task(create_traces_topic(profile))
    except ExceptionGroup as failures:
        raise failures.exceptions[0] from None  # one clear failure; the others were cancelled
    return missing


@contextmanager
def test_infra(profile: Profile) -> Iterator[None]:
    """The infrastructure of ``profile`` for a test session.

    Whatever already listens on the profile's ports is reused and left running; the rest is
    started (as containers where a Docker engine answers, else as local processes) and stopped
    when the session ends.
    """
    if containers.docker_answers():
        with containers.infra_containers(profile, missing_components(profile)):
            yield
        return
    supervisor = Supervisor(profile.state_dir / "logs")
    try:
        run_to_completion(start_infra(profile, supervisor))
        yield
    finally:
        supervisor.stop_all()
