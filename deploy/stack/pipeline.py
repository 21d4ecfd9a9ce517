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


def start_pipeline(
    supervisor: Supervisor, settings: Settings, metrics_base_port: int = 0
) -> list[str]:
    """Start the simulator, the services and the feedback listener, each service serving
    its metrics on its port of ``metrics_ports(metrics_base_port)``; return their names in the
    supervisor."""
    settings.simulator_log.parent.mkdir(parents=True, exist_ok=True)
    ports = metrics_ports(metrics_base_port)
    modules = {SIMULATOR: SIMULATOR_MODULE, **SERVICES}
    for name, module in modules.items():
        env = child_env(settings.model_copy(update={"metrics_port": ports.get(name, 0)}))
        supervisor.start(name, [sys.executable, "-m", module], env=env, cwd=REPO_ROOT)
    return list(modules)
