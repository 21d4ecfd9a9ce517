"""The fast SMTP sink every benchmark delivers to: built from deploy/tools/smtpsink, read over HTTP.

The sink is a few hundred lines of Go, so that answering SMTP costs the co-located pipeline
almost no CPU; it records each Message-ID with the time its final dot arrived.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import httpx

from deploy.stack import tools
from deploy.stack.processes import Supervisor
from libs.settings import REPO_ROOT

SINK_MODULE = REPO_ROOT / "deploy" / "tools" / "smtpsink"
SINK = "smtpsink"


def sink_binary() -> Path:
    """The sink, built into the tool cache once per version of its source."""
    digest = hashlib.sha256()
    for source in [*sorted(SINK_MODULE.glob("*.go")), SINK_MODULE / "go.mod"]:
        digest.update(source.read_bytes())
    target = tools.CACHE / "bin" / f"smtpsink-{digest.hexdigest()[:12]}"
    if target.exists():
        return target
    return tools._go_install(SINK, target, ".", SINK_MODULE)


def message_id_of(header: str) -> str:
    """The Sendarix id in a Message-ID header's value (``<id@domain>`` without brackets)."""
    return header.partition("@")[0]


class Sink:
    """A running sink: where it listens, and every message it received so far."""

    def __init__(
        self, smtp_port: int, http_port: int, answer_after: float = 0.0, name: str = SINK
    ) -> None:
        self.smtp_port = smtp_port
        self.http_port = http_port
        self.answer_after = answer_after
        """Seconds RCPT TO waits for its reply (a destination that answers slowly)."""
        self.name = name
        self.received: dict[str, int] = {}
        """Message id -> when its first copy arrived (ns since the epoch)."""
        self.copies: Counter[str] = Counter()
        self._cursor = 0
        self._http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=30)

    def start(self, supervisor: Supervisor) -> None:
        """Start the sink as a child of ``supervisor``."""
        supervisor.start(
            self.name,
            [
                sink_binary(),
                "-smtp",
                f"127.0.0.1:{self.smtp_port}",
                "-http",
                f"127.0.0.1:{self.http_port}",
                "-answer-after",
                f"{self.answer_after}s",
            ],
        )

    async def poll(self) -> int:
        """Fetch the records that arrived since the last poll; return how many there were."""
        response = await self._http.get("/records", params={"from": self._cursor})
        response.raise_for_status()
        lines = response.text.splitlines()
        self._cursor += len(lines)
        for line in lines:
            received_ns, _, header = line.partition(" ")
            message_id = message_id_of(header)
            self.copies[message_id] += 1
            self.received.setdefault(message_id, int(received_ns))
        return len(lines)

    async def close(self) -> None:
        await self._http.aclose()
