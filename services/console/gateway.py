"""The console's calls to the gateway API, made with the logged-in user's key.

Whatever the user sees, the gateway let that key see: tenant isolation is the API's, not the
console's. A refusal comes back as ``GatewayProblem`` with the API's own code and detail; an
unknown or revoked key ends the session.
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import Depends, Request

from services.console.session import LoginRequired, SessionDep

TIMEOUT_SECONDS = 10.0


class GatewayProblem(Exception):
    """The gateway refused or failed a call."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


def _checked(response: httpx.Response) -> httpx.Response:
    if response.is_success:
        return response
    if response.status_code == 401:
        raise LoginRequired
    try:
        problem = response.json()
        code, detail = str(problem.get("code", "error")), str(problem.get("detail", ""))
    except ValueError:
        code, detail = "error", response.text[:200]
    raise GatewayProblem(response.status_code, code, detail)


class Gateway:
    """The gateway API as one user's key sees it."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, api_key: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}

    async def _call(self, method: str, path: str, **options: Any) -> httpx.Response:
        try:
            response = await self._http.request(
                method, f"{self._base}{path}", headers=self._headers, **options
            )
        except httpx.HTTPError as error:
            detail = f"the gateway did not answer: {error}"
            raise GatewayProblem(503, "gateway_unavailable", detail) from error
        return _checked(response)

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return (await self._call("GET", path, params=_present(params))).json()

    async def get_bytes(self, path: str) -> bytes:
        return (await self._call("GET", path)).content

    async def post(self, path: str, json: Any = None) -> Any:
        return _json_or_none(await self._call("POST", path, json=json))

    async def put(self, path: str, json: Any) -> Any:
        return _json_or_none(await self._call("PUT", path, json=json))

    async def delete(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return _json_or_none(await self._call("DELETE", path, params=_present(params)))


def _present(params: dict[str, Any] | None) -> dict[str, Any] | None:
    """The query parameters that have a value (an empty form field is no filter)."""
    if params is None:
        return None
    return {name: value for name, value in params.items() if value not in (None, "", [])}


def _json_or_none(response: httpx.Response) -> Any:
    return response.json() if response.content else None


def _gateway(request: Request, session: SessionDep) -> Gateway:
    return Gateway(
        request.app.state.http, request.app.state.settings.internal_gateway_url, session.api_key
    )


GatewayDep = Annotated[Gateway, Depends(_gateway)]
