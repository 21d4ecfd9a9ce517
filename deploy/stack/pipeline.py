"""The Sendarix processes of a stack: the services, the feedback listener and the mailbox
simulator.

``make run`` starts them under its supervisor; the end-to-end tests do the same with settings of
their own (a topic prefix), then kill and restart single services.
"""

from __future__ import annotations

import os
import sys

from deploy.stack.processes import Supervisor
from libs.settings import REPO_ROOT, Settings

SERVICES: dict[str, str] = {
    "ingest": "services.ingest",
    "render": "services.render",
    "policy-check": "services.policy_check",
    "router": "services.router",
    "sender": "services.sender",
    "retry-scheduler": "services.retry_scheduler",
    "webhook": "services.webhook",
    "analytics": "services.analytics",
    "feedback": "services.feedback",
    "console": "services.console",
}
"""Each service's name and the module that runs it (``python -m``), in pipeline order; then
the feedback listener, where what the receiving side says later comes back, and the support
console, which shows it all to people."""

SIMULATOR = "simulator"
SIMULATOR_MODULE = "deploy.simulator"


def child_env(settings: Settings) -> dict[str, str]:
    """The environment of a Sendarix process: ours, plus ``settings`` as SENDARIX_* variables."""
    return {**os.environ, **settings.as_env(), "PYTHONUNBUFFERED": "1"}


def metrics_ports(base: int) -> dict[str, int]:
    """Each service's metrics port: ``base``, ``base + 1``, … in ``SERVICES`` order (base 0:
    none serves metrics)."""
    return {name: base + index if base else 0 for index, name in enumerate(SERVICES)}


LANE_SPLIT_SERVICES = ("render", "policy-check", "router", "sender")
"""The stage services that can run as two processes, one per kind of lane.

In one process, an OTP's record waits on the event loop behind whatever bulk work is ready
there (a sender batch signs 250 messages, ~1 ms each); in a process of its own it waits only
for the kernel to schedule it. Measured under a 20,000-message backlog: OTP p99 268 ms split,
2,002 ms not (docs/benchmarks.md). Lowering the patient processes' CPU priority (niceness 10)
was tried and starved the pipeline's bottleneck: the backlog drained at a third of the speed."""
URGENT_LANES = "critical,high"
PATIENT_LANES = "normal,bulk"


def urgent_name(service: str) -> str:
    """The supervisor's name of the process serving ``service``'s urgent lanes."""
    return f"{service}-urgent"


def pipeline_processes(
    settings: Settings, metrics_base_port: int = 0, lane_split: bool = False
) -> list[tuple[str, list[str], Settings]]:
    """Each process of the pipeline: its name, its command line and its settings.

    Each service serves its metrics on its port of ``metrics_ports(metrics_base_port)``. With
    ``lane_split``, each of ``LANE_SPLIT_SERVICES`` runs as two processes in the same consumer
    groups: ``<service>-urgent`` serves the critical and high lanes (no metrics port),
    ``<service>`` the normal and bulk lanes.
    """
    ports = metrics_ports(metrics_base_port)
    processes = []
    for name, module in {SIMULATOR: SIMULATOR_MODULE, **SERVICES}.items():
        argv = [sys.executable, "-m", module]
        own = settings.model_copy(update={"metrics_port": ports.get(name, 0)})
        if lane_split and name in LANE_SPLIT_SERVICES:
            urgent = settings.model_copy(update={"metrics_port": 0, "lanes": URGENT_LANES})
            processes.append((urgent_name(name), argv, urgent))
            own = own.model_copy(update={"lanes": PATIENT_LANES})
        processes.append((name, argv, own))
    return processes


def start_pipeline(
    supervisor: Supervisor,
    settings: Settings,
    metrics_base_port: int = 0,
    lane_split: bool = False,
) -> list[str]:
    """Start the simulator, the services and the feedback listener (``pipeline_processes``);
    return their names in the supervisor."""
    settings.simulator_log.parent.mkdir(parents=True, exist_ok=True)
    processes = pipeline_processes(settings, metrics_base_port, lane_split)
    for name, argv, own in processes:
        supervisor.start(name, argv, env=child_env(own), cwd=REPO_ROOT)
    return [name for name, _, _ in processes]
