"""A small supervisor for the local stack: start named processes, wait until ready, kill, restart.

Each child runs in a session of its own, so a Ctrl-C in the terminal reaches only the stack, which
then stops its children in order (a double signal would cut a graceful shutdown short). A child's
output is appended to ``<log_dir>/<name>.log``. No child outlives the stack: ``stop_all`` runs at
interpreter exit, and on Linux each child is also sent its stop signal by the kernel when the
stack's process dies, even by SIGKILL (the parent-death signal; it follows the *thread* that
started the child, so start children from a thread that lives as long as the stack).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from deploy.stack.console import log_tail, say

T = TypeVar("T")

Probe = Callable[[], Awaitable[bool]]
"""A readiness check: True when ready; an exception counts as not ready yet."""

STABLE_SECONDS = 60.0
"""A child that ran this long before it exited is restarted without waiting."""

_PR_SET_PDEATHSIG = 1


class StartupError(RuntimeError):
    """A child exited, or did not become ready in time; the message carries its log's tail."""


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


async def passes(probe: Probe) -> bool:
    """Run a readiness check, counting an exception (refused, not there yet) as not ready."""
    try:
        return await probe()
    except Exception:
        return False


async def wait_until(check: Probe, within: float, what: str, every: float = 0.2) -> None:
    """Poll ``check`` until it returns True; after ``within`` seconds raise TimeoutError."""
    deadline = time.monotonic() + within
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {within:.0f} s")
        await asyncio.sleep(every)


def run_to_completion(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a loop of its own, from synchronous code such as a session fixture.

    Unlike ``asyncio.run`` it leaves the thread's current event loop alone (pytest-asyncio's).
    """
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


def restart_delay(failures: int) -> float:
    """Seconds to wait before restarting a child that failed ``failures`` times in a row."""
    return float(min(30, 2 ** max(0, failures - 1)))


def _die_with_parent(stop_signal: int) -> Callable[[], None] | None:
    """A pre-exec hook asking the kernel to send ``stop_signal`` when our process dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def arm() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, stop_signal)
        if os.getppid() != parent:  # the parent died before the hook ran
            os.kill(os.getpid(), stop_signal)

    return arm


@dataclass(frozen=True)
class ProcessSpec:
    """How to (re)start one child."""

    argv: tuple[str, ...]
    env: Mapping[str, str] | None
    cwd: Path | None
    stop_signal: signal.Signals
    user: str | None


@dataclass
class _Child:
    spec: ProcessSpec
    process: subprocess.Popen[bytes]
    started_at: float = field(default_factory=time.monotonic)
    stopped: bool = False
    """Stopped through the supervisor (not to be restarted)."""


class Supervisor:
    """The named child processes of one stack."""

    def __init__(self, log_dir: Path, stop_timeout: float = 10.0) -> None:
        self.log_dir = log_dir
        self.stop_timeout = stop_timeout
        self._children: dict[str, _Child] = {}
        atexit.register(self.stop_all)

    def log_path(self, name: str) -> Path:
        """Where a child's output goes."""
        return self.log_dir / f"{name}.log"

    def tail(self, name: str, lines: int = 30) -> str:
        """The last lines of a child's log."""
        return log_tail(self.log_path(name), lines)

    @property
    def names(self) -> list[str]:
        """Every child ever started, in start order."""
        return list(self._children)

    def start(
        self,
        name: str,
        argv: Sequence[str | Path],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        user: str | None = None,
    ) -> int:
        """Start a child (``user``: run it as that account; needs root); return its pid."""
        if self.running(name):
            raise RuntimeError(f"{name} is already running")
        spec = ProcessSpec(tuple(str(arg) for arg in argv), env, cwd, stop_signal, user)
        self._children[name] = _Child(spec, self._spawn(name, spec))
        return self.pid(name)

    def _spawn(self, name: str, spec: ProcessSpec) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path(name).open("ab") as log:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            log.write(f"\n--- {stamp} starting {name}: {' '.join(spec.argv)}\n".encode())
            log.flush()
            return subprocess.Popen(
                spec.argv,
                env=spec.env,
                cwd=spec.cwd,
                user=spec.user,
                group=spec.user,
                extra_groups=[] if spec.user else None,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(spec.stop_signal),
            )

    def pid(self, name: str) -> int:
        """The pid of a child's current process."""
        return self._children[name].process.pid

    def running(self, name: str) -> bool:
        """Whether a child's current process is alive."""
        child = self._children.get(name)
        return child is not None and child.process.poll() is None

    def returncode(self, name: str) -> int | None:
        """How a child's current process ended (negative: by that signal); None while it runs."""
        return self._children[name].process.poll()

    def exited(self) -> list[str]:
        """Children whose process ended on its own (not stopped through the supervisor)."""
        return [
            name
            for name, child in self._children.items()
            if not child.stopped and child.process.poll() is not None
        ]

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` to a child's whole process group (kill -9 by default), as a crash would."""
        process = self._children[name].process
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)

    def stop(self, *names: str) -> None:
        """Stop children gracefully, all at once; SIGKILL whatever still runs after the timeout."""
        for name in names:
            self._children[name].stopped = True
            self.kill(name, self._children[name].spec.stop_signal)
        deadline = time.monotonic() + self.stop_timeout
        while any(self.running(name) for name in names) and time.monotonic() < deadline:
            time.sleep(0.05)
        for name in names:
            if self.running(name):
                say(f"{name} did not stop within {self.stop_timeout:.0f} s; killing it")
                self.kill(name, signal.SIGKILL)
                self._children[name].process.wait()

    def stop_all(self) -> None:
        """Stop every child, the last started first (services before the broker they use)."""
        for name in reversed(self.names):
            if self.running(name):
                self.stop(name)
            self._children[name].stopped = True

    def restart(self, name: str) -> int:
        """Stop a child if it runs, then start it again the same way; return the new pid."""
        if self.running(name):
            self.stop(name)
        child = self._children[name]
        self._children[name] = _Child(child.spec, self._spawn(name, child.spec))
        return self.pid(name)

    async def wait_ready(
        self,
        name: str,
        *,
        port: int | None = None,
        probe: Probe | None = None,
        within: float = 60.0,
    ) -> None:
        """Wait until a child listens on ``port`` and ``probe`` passes; fail if it exits first."""

        async def ready() -> bool:
            if not self.running(name):
                raise StartupError(
                    f"{name} exited with code {self.returncode(name)} before it was ready; "
                    f"last lines of {self.log_path(name)}:\n{self.tail(name)}"
                )
            if port is not None and not listening(port):
                return False
            return probe is None or await passes(probe)

        try:
            await wait_until(ready, within, name)
        except TimeoutError as error:
            raise StartupError(
                f"{error}; last lines of {self.log_path(name)}:\n{self.tail(name)}"
            ) from None

    async def keep_alive(self, every: float = 0.5) -> None:
        """Restart every child that exits on its own, pausing longer after each quick failure.

        Runs until cancelled.
        """
        failures: dict[str, int] = {}
        due: dict[str, float] = {}
        while True:
            now = time.monotonic()
            for name in self.exited():
                if name in due:
                    continue
                child = self._children[name]
                quick = now - child.started_at < STABLE_SECONDS
                failures[name] = failures.get(name, 0) + 1 if quick else 1
                delay = restart_delay(failures[name])
                say(
                    f"{name} exited with code {child.process.returncode}; restarting it in "
                    f"{delay:.0f} s. Last lines of {self.log_path(name)}:\n{self.tail(name)}"
                )
                due[name] = now + delay
            for name, when in list(due.items()):
                if now >= when:
                    del due[name]
                    if not self._children[name].stopped:
                        self.restart(name)
            await asyncio.sleep(every)
