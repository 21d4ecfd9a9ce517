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
}
"""Each service's name and the module that runs it (``python -m``), in pipeline order; then
the feedback listener, where what the receiving side says later comes back."""

SIMULATOR = "simulator"
SIMULATOR_MODULE = "deploy.simulator"


def child_env(settings: Settings) -> dict[str, str]:
    """The environment of a Sendarix process: ours, plus ``settings`` as SENDARIX_* variables."""
    return {**os.environ, **settings.as_env(), "PYTHONUNBUFFERED": "1"}


def start_pipeline(supervisor: Supervisor, settings: Settings) -> list[str]:
    """Start the simulator, the services and the feedback listener; return their names in
    the supervisor."""
    settings.simulator_log.parent.mkdir(parents=True, exist_ok=True)
    env = child_env(settings)
    modules = {SIMULATOR: SIMULATOR_MODULE, **SERVICES}
    for name, module in modules.items():
        supervisor.start(name, [sys.executable, "-m", module], env=env, cwd=REPO_ROOT)
    return list(modules)
