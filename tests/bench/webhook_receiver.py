"""``python -m tests.bench.webhook_receiver PORT``: the webhooks scenario's receivers, one process.

``POST /ok`` answers 204 and notes when each ``webhook-id`` arrived; ``POST /fail`` answers
500; ``GET /stats`` returns the counts (cheap enough to poll while posts arrive), ``GET /arrivals``
the notes. A bare ASGI app on uvicorn, so the receiver is not
what limits the figures.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

arrivals: dict[str, float] = {}
"""First arrival (epoch seconds) of each webhook-id answered 2xx."""
posts = {"ok": 0, "fail": 0}


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    path = scope["path"]
    if path == "/ok":
        posts["ok"] += 1
        for name, value in scope["headers"]:
            if name == b"webhook-id":
                arrivals.setdefault(value.decode(), time.time())
        await _answer(send, 204)
    elif path == "/fail":
        posts["fail"] += 1
        await _answer(send, 500)
    elif path == "/arrivals":
        await _answer(send, 200, json.dumps(arrivals).encode())
    else:
        await _answer(send, 200, json.dumps({"posts": posts, "arrived": len(arrivals)}).encode())


async def _answer(send: Send, status: int, body: bytes = b"") -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", lifespan="off")
