"""The local stack's supervisor on real processes: start, kill -9, restart, stop, no orphans."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from deploy.stack.processes import StartupError, Supervisor
from libs.settings import REPO_ROOT
from tests.support import eventually

pytestmark = pytest.mark.integration

SERVER = textwrap.dedent(
    """
    import signal, socket, subprocess, sys, time
    if "--ignore-sigterm" in sys.argv:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # a grandchild
    listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
    print("serving", flush=True)
    while True:
        time.sleep(1)
    """
)
"""A child that listens on a port, has a child of its own, and may refuse SIGTERM."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _gone(pid: int) -> bool:
    """The process is gone (a zombie waiting for a reaper that is not ours counts as gone)."""
    try:
        status: str = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return True
    return status == str(psutil.STATUS_ZOMBIE)


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async def check() -> bool | None:
        return True if condition() else None

    await eventually(check, timeout=timeout)


def _family(pid: int) -> list[int]:
    """A process and all of its descendants."""
    process = psutil.Process(pid)
    return [pid, *(child.pid for child in process.children(recursive=True))]


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    stack = Supervisor(tmp_path / "logs", stop_timeout=2.0)
    yield stack
    stack.stop_all()


async def _serve(supervisor: Supervisor, name: str, *flags: str) -> int:
    port = _free_port()
    supervisor.start(name, [sys.executable, "-c", SERVER, str(port), *flags])
    await supervisor.wait_ready(name, port=port, within=20)
    return port


async def test_a_child_killed_by_sigkill_is_restarted_on_request(supervisor: Supervisor) -> None:
    await _serve(supervisor, "server")
    first = supervisor.pid("server")

    supervisor.kill("server")  # kill -9 of the whole process group

    await _until(lambda: supervisor.returncode("server") is not None)
    assert supervisor.returncode("server") == -signal.SIGKILL
    assert supervisor.exited() == ["server"]
    second = supervisor.restart("server")
    assert second != first
    assert supervisor.running("server")
    assert supervisor.exited() == []
    assert "serving" in supervisor.tail("server")


async def test_keep_alive_restarts_a_child_that_died(supervisor: Supervisor) -> None:
    await _serve(supervisor, "server")
    first = supervisor.pid("server")
    watcher = asyncio.create_task(supervisor.keep_alive(every=0.1))
    try:
        supervisor.kill("server")

        await _until(lambda: supervisor.running("server") and supervisor.pid("server") != first)
    finally:
        watcher.cancel()


async def test_stop_all_leaves_no_process_behind(supervisor: Supervisor) -> None:
    await _serve(supervisor, "polite")
    await _serve(supervisor, "stubborn", "--ignore-sigterm")
    processes = _family(supervisor.pid("polite")) + _family(supervisor.pid("stubborn"))
    assert len(processes) == 4

    supervisor.stop_all()

    assert supervisor.returncode("polite") == -signal.SIGTERM
    assert supervisor.returncode("stubborn") == -signal.SIGKILL  # after stop_timeout
    await _until(lambda: all(_gone(pid) for pid in processes))
    assert supervisor.exited() == []


async def test_a_child_that_exits_before_it_is_ready_fails_with_its_log(
    supervisor: Supervisor,
) -> None:
    crash = "print('no config found'); raise SystemExit(3)"
    supervisor.start("broken", [sys.executable, "-c", crash])

    with pytest.raises(StartupError, match="exited with code 3") as failure:
        await supervisor.wait_ready("broken", port=_free_port(), within=20)

    assert "no config found" in str(failure.value)


async def test_children_die_with_the_stack_even_when_it_is_killed(tmp_path: Path) -> None:
    stack = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from deploy.stack.processes import Supervisor
        supervisor = Supervisor(Path({str(tmp_path)!r}))
        print(supervisor.start("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"]))
        sys.stdout.flush()
        time.sleep(600)
        """
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", stack, cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    child = int(await process.stdout.readline())
    assert not _gone(child)

    process.kill()
    await process.wait()

    await _until(lambda: _gone(child))
