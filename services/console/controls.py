"""What a console control does after its gateway call: back to the page it came from (a 303,
so a reload never repeats it) with what happened in the query string."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi.responses import RedirectResponse

from services.console.gateway import GatewayProblem


def said(problem: GatewayProblem) -> str:
    """A refusal as one line for the page: the API's code and its detail."""
    return f"{problem.code}: {problem.detail}" if problem.detail else problem.code


def back_to(path: str, *, done: str = "", problem: str = "", **params: str) -> RedirectResponse:
    """303 to ``path`` (a console path) with ``params`` and the flash (``done``) or the
    refusal (``problem``) to show there."""
    query = {name: value for name, value in params.items() if value}
    query |= {"done": done} if done else {}
    query |= {"problem": problem} if problem else {}
    return RedirectResponse(f"{path}?{urlencode(query)}" if query else path, status_code=303)
