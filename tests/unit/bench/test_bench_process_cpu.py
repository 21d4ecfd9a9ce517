"""The sampler's CPU time of a process with children: the CPU of a child that ended (a
PostgreSQL connection closed) stays in the process's figure."""

from __future__ import annotations

import subprocess
import sys

from tests.bench.measure import _children_by_parent, _usage

PARENT = """
import subprocess, sys, time
subprocess.run([sys.executable, "-c", "import time\\nend = time.process_time() + 0.5\\n"
                "while time.process_time() < end: pass"], check=True)
print("reaped", flush=True)
time.sleep(30)
"""


def test_the_cpu_of_a_child_that_ended_is_counted_with_its_parent() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline() == "reaped\n"
        cpu, _ = _usage(parent.pid, _children_by_parent())
        alone, _ = _usage(parent.pid, {})
    finally:
        parent.kill()
        parent.wait()
    assert cpu - alone >= 0.45
