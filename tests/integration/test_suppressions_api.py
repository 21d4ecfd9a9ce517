"""``/v1/suppressions`` on the real database through the in-process gateway: list, check, add,
remove, CSV export and import; scopes, tenant isolation and bad input."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from libs import keys
from libs.suppression_csv import MAX_LINE_BYTES
from libs.suppressions import Suppression, SuppressionReason, add_suppressions
from libs.tenants import Tenant, create_tenant
from schemas.common import Stream
from services.ingest.routes_suppressions import IMPORTS
from tests.support import eventually

pytestmark = pytest.mark.integration

PATH = "/v1/suppressions"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def address() -> str:
    return f"someone-{uuid.uuid4().hex[:8]}@example.org"


async def scoped_key(pool: asyncpg.Pool, tenant_id: str, *scopes: keys.Scope) -> str:
    wanted = keys.KeySettings(name="scoped", scopes=frozenset(scopes))
    _, secret = await keys.insert_key(pool, tenant_id, wanted)
    return secret


async def add(client: httpx.AsyncClient, key: str, *items: dict[str, Any]) -> httpx.Response:
    return await client.post(PATH, json={"suppressions": list(items)}, headers=auth(key))


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    return body


async def test_add_check_list_and_remove(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    _, key = tenant
    both, broadcast = address(), address()
    response = await add(
        client,
        key,
        {"address": both.upper(), "note": "asked by support #12"},
        {"address": broadcast, "stream": "broadcast", "expires_at": "2099-01-01T00:00:00Z"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"written": 3}

    checked = (await client.get(f"{PATH}/{both.upper()}", headers=auth(key))).json()
    assert checked["address"] == both
    assert [
        (s["stream"], s["suppressed"], s["critical_mail_goes"]) for s in checked["streams"]
    ] == [
        ("transactional", True, False),
        ("broadcast", True, False),
    ]
    assert checked["streams"][0]["suppressions"][0]["note"] == "asked by support #12"
    assert checked["streams"][0]["suppressions"][0]["created_by"].startswith("key:")

    page = (await client.get(PATH, params={"address": broadcast}, headers=auth(key))).json()
    [only] = page["suppressions"]
    assert (only["stream"], only["reason"]) == ("broadcast", "manual")
    assert only["expires_at"].startswith("2099-01-01")

    removed = await client.delete(
        f"{PATH}/{both}", params={"stream": "broadcast", "note": "typo"}, headers=auth(key)
    )
    assert [s["stream"] for s in removed.json()["removed"]] == ["broadcast"]
    again = await client.delete(f"{PATH}/{both}", params={"stream": "broadcast"}, headers=auth(key))
    assert_problem(again, 404, "not_found")
    left = (await client.get(PATH, params={"address": both}, headers=auth(key))).json()
    assert [s["stream"] for s in left["suppressions"]] == ["transactional"]


async def test_pages_follow_the_cursor_and_filters_apply(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    created, key = tenant
    prefix = f"page-{uuid.uuid4().hex[:6]}-"
    await add(client, key, *({"address": f"{prefix}{i:02}@example.org"} for i in range(7)))
    await add_suppressions(
        pool,
        [
            Suppression(
                created.id, f"{prefix}99@example.org", Stream.BROADCAST, SuppressionReason.COMPLAINT
            )
        ],
    )
    seen: list[tuple[str, str]] = []
    cursor: str | None = None
    while True:
        params = {"prefix": prefix, "limit": "4"} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(PATH, params=params, headers=auth(key))).json()
        seen += [(s["address"], s["stream"]) for s in page["suppressions"]]
        if not (cursor := page["next_cursor"]):
            break
    assert len(seen) == 15 and seen == sorted(seen)
    complaints = await client.get(
        PATH, params={"prefix": prefix, "reason": "complaint"}, headers=auth(key)
    )
    assert [s["address"] for s in complaints.json()["suppressions"]] == [f"{prefix}99@example.org"]
    future = await client.get(
        PATH, params={"prefix": prefix, "since": "2099-01-01T00:00:00Z"}, headers=auth(key)
    )
    assert future.json()["suppressions"] == []
    like = await client.get(PATH, params={"prefix": "%"}, headers=auth(key))
    assert like.json()["suppressions"] == []


@pytest.mark.parametrize(
    "params",
    [
        {"stream": "carrier-pigeon"},
        {"reason": "bored"},
        {"since": "yesterday"},
        {"limit": "0"},
        {"limit": "100000"},
        {"cursor": "not-a-cursor"},
        {"colour": "red"},
        {"format": "xml"},
    ],
)
async def test_bad_parameters_are_422_naming_them(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str], params: dict[str, str]
) -> None:
    body = assert_problem(
        await client.get(PATH, params=params, headers=auth(tenant[1])), 422, "invalid_parameter"
    )
    assert [e["pointer"] for e in body["errors"]] == list(params)


async def test_bad_additions_are_refused_whole_with_pointers(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    _, key = tenant
    good = address()
    response = await add(
        client,
        key,
        {"address": good},
        {"address": "not an address"},
        {"address": good, "stream": "pigeon"},
        {"address": good, "expires_at": "2001-01-01T00:00:00Z"},
    )
    assert response.status_code == 422
    assert [e["pointer"] for e in response.json()["errors"]] == ["/suppressions/2/stream"]
    response = await add(
        client,
        key,
        {"address": good},
        {"address": "not an address"},
        {"address": good, "expires_at": "2001-01-01T00:00:00Z"},
    )
    assert_problem(response, 422, "expired")
    response = await add(client, key, {"address": good}, {"address": "not an address"})
    body = assert_problem(response, 422, "invalid_address")
    assert [e["pointer"] for e in body["errors"]] == ["/suppressions/1/address"]
    follow_up = await add(client, key, {"address": good}, {"address": "a@b"})
    body = assert_problem(follow_up, 422, "invalid_address")
    assert [e["pointer"] for e in body["errors"]] == ["/suppressions/1/address"]
    assert (await client.get(f"{PATH}/{good}", headers=auth(key))).json()["streams"][0][
        "suppressed"
    ] is False
    too_many = await add(client, key, *({"address": good} for _ in range(1001)))
    assert too_many.status_code == 422
    garbage = await client.post(
        PATH, content=b"{", headers=auth(key) | {"content-type": "application/json"}
    )
    assert_problem(garbage, 400, "malformed_json")


async def test_scopes(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    created, admin = tenant
    reader = await scoped_key(pool, created.id, keys.Scope.READ)
    sender = await scoped_key(pool, created.id, keys.Scope.SEND)
    hostile = address()
    await add_suppressions(
        pool,
        [Suppression(created.id, hostile, s, SuppressionReason.COMPLAINT) for s in Stream],
    )
    assert (await client.get(f"{PATH}/{hostile}", headers=auth(reader))).status_code == 200
    assert_problem(await add(client, reader, {"address": address()}), 403, "forbidden")
    assert_problem(await client.delete(f"{PATH}/{hostile}", headers=auth(reader)), 403, "forbidden")
    assert_problem(
        await client.delete(f"{PATH}/{hostile}", headers=auth(sender)), 403, "complaint_needs_admin"
    )
    checked = (await client.get(f"{PATH}/{hostile}", headers=auth(admin))).json()
    assert all(s["suppressed"] and s["critical_mail_goes"] for s in checked["streams"])
    assert_problem(await client.get(PATH, headers=auth(sender)), 403, "forbidden")
    removed = await client.delete(
        f"{PATH}/{hostile}", params={"note": "resolved"}, headers=auth(admin)
    )
    assert len(removed.json()["removed"]) == 2
    audit = await pool.fetch(
        "SELECT removed_by, note FROM suppression_removals WHERE tenant_id = $1 AND address = $2",
        uuid.UUID(created.id),
        hostile,
    )
    assert {(r["removed_by"], r["note"]) for r in audit} == {(audit[0]["removed_by"], "resolved")}
    assert_problem(await client.get(PATH), 401, "unauthorized")


async def test_a_tenant_never_sees_or_changes_another_tenants_suppressions(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    _, key = tenant
    _, other_key = await create_tenant(pool, "other", ["example.test"], dev_mode=True)
    theirs = address()
    await add(client, other_key, {"address": theirs})
    mine = (await client.get(f"{PATH}/{theirs}", headers=auth(key))).json()
    assert not any(s["suppressed"] for s in mine["streams"])
    assert (await client.get(PATH, params={"address": theirs}, headers=auth(key))).json()[
        "suppressions"
    ] == []
    exported = await client.get(f"{PATH}.csv", params={"address": theirs}, headers=auth(key))
    assert exported.text.count("\n") == 1
    assert_problem(await client.delete(f"{PATH}/{theirs}", headers=auth(key)), 404, "not_found")
    still = (await client.get(f"{PATH}/{theirs}", headers=auth(other_key))).json()
    assert all(s["suppressed"] for s in still["streams"])


async def import_csv(client: httpx.AsyncClient, key: str, body: bytes) -> httpx.Response:
    headers = auth(key) | {"content-type": "text/csv"}
    return await client.post(f"{PATH}/import", content=body, headers=headers)


async def test_csv_export_imports_back(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    _, key = tenant
    prefix = f"csv-{uuid.uuid4().hex[:6]}-"
    rows = "".join(
        f'{prefix}{i}@Example.org,{"broadcast" if i % 2 else ""},,"note, {i}"\r\n'
        for i in range(50)
    )
    formula = f"={prefix}x@example.org"  # a valid address a spreadsheet would run
    rows += f"{formula},broadcast,,+1 is a formula too\r\n"
    imported = await import_csv(client, key, f"address,stream,expires_at,note\r\n{rows}".encode())
    assert imported.status_code == 200, imported.text
    assert imported.json() == {"written": 76}
    exported = await client.get(PATH, params={"prefix": prefix, "format": "csv"}, headers=auth(key))
    assert exported.headers["content-type"].startswith("text/csv")
    records = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(records) == 75
    assert records[0]["note"].startswith("note, ")
    everything = await client.get(PATH, params={"format": "csv"}, headers=auth(key))
    [guarded] = [r for r in csv.DictReader(io.StringIO(everything.text)) if "=" in r["address"]]
    assert (guarded["address"], guarded["note"]) == (f"'{formula}", "'+1 is a formula too")
    _, other_key = await create_tenant(pool, "importer", ["example.test"], dev_mode=True)
    again = await import_csv(client, other_key, everything.content)
    assert again.json() == {"written": 76}
    back = await client.get(f"{PATH}/{formula}", headers=auth(other_key))
    assert back.status_code == 200 and back.json()["streams"][1]["suppressed"], back.text


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"", 422, "invalid_csv"),
        (b"name,email\nx,y\n", 422, "invalid_csv"),
        (b"stream\nbroadcast\n", 422, "invalid_csv"),
        (b'address\n"unterminated@example.org\n', 422, "invalid_csv"),
        (b"address\na@example.org,extra,columns\n", 422, "invalid_csv"),
        (b"address\n\xff\xfe@example.org\n", 422, "invalid_csv"),
        (b"address\nnul\x00@example.org\n", 422, "invalid_csv"),
        (b"address\nok@example.org\nnot-an-address\n", 422, "invalid_address"),
        (b"address,expires_at\nok@example.org,soon\n", 422, "invalid_expires_at"),
        (b"address\n" + b"x" * (10 * 1024 * 1024) + b"@example.org\n", 413, "line_too_long"),
        (b"address," + b"y" * (MAX_LINE_BYTES + 1), 413, "line_too_long"),
    ],
)
async def test_garbage_csv_is_refused_and_imports_nothing(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str], body: bytes, status: int, code: str
) -> None:
    _, key = tenant
    response = await import_csv(client, key, body)
    problem = assert_problem(response, status, code)
    if code == "invalid_address":
        assert [e["pointer"] for e in problem["errors"]] == ["/rows/2/address"]
    listed = (
        await client.get(PATH, params={"address": "ok@example.org"}, headers=auth(key))
    ).json()
    assert listed["suppressions"] == []


async def test_import_needs_csv_and_the_send_scope(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tenant: tuple[Tenant, str]
) -> None:
    created, key = tenant
    as_json = await client.post(
        f"{PATH}/import",
        content=b"address\n",
        headers=auth(key) | {"content-type": "application/json"},
    )
    assert_problem(as_json, 415, "unsupported_media_type")
    reader = await scoped_key(pool, created.id, keys.Scope.READ)
    assert_problem(await import_csv(client, reader, b"address\na@example.org\n"), 403, "forbidden")


@pytest.mark.parametrize(
    ("method", "path", "params", "body"),
    [
        ("GET", f"{PATH}/a%00b@example.org", {}, None),
        ("DELETE", f"{PATH}/a%00b@example.org", {}, None),
        ("DELETE", f"{PATH}/a@example.org", {"note": "why\x00"}, None),
        ("GET", PATH, {"prefix": "a\x00"}, None),
        ("GET", PATH, {"cursor": "WyJhXHUwMDAwIiwgImIiLCAiYyJd"}, None),  # ["a\u0000", "b", "c"]
        ("POST", PATH, {}, b'{"suppressions": [{"address": "a\\u0000@example.org"}]}'),
        ("POST", PATH, {}, b'{"suppressions": [{"address": "a@example.org", "note": "\\ud800"}]}'),
    ],
)
async def test_text_the_database_cannot_store_is_a_422(
    client: httpx.AsyncClient,
    tenant: tuple[Tenant, str],
    method: str,
    path: str,
    params: dict[str, str],
    body: bytes | None,
) -> None:
    headers = auth(tenant[1]) | {"content-type": "application/json"}
    response = await client.request(method, path, params=params, content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_imports_beyond_two_at_once_are_told_to_retry(
    client: httpx.AsyncClient, tenant: tuple[Tenant, str]
) -> None:
    _, key = tenant
    release = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b"address\n"
        await release.wait()
        yield f"{address()}\n".encode()

    headers = auth(key) | {"content-type": "text/csv"}
    slow = [
        asyncio.create_task(client.post(f"{PATH}/import", content=slow_body(), headers=headers))
        for _ in range(2)
    ]
    await eventually(lambda: _running(2))
    refused = await import_csv(client, key, b"address\na@example.org\n")
    assert_problem(refused, 429, "rate_limited")
    assert refused.headers["retry-after"] == "10"
    release.set()
    assert [(await task).json() for task in slow] == [{"written": 2}, {"written": 2}]
    assert (await import_csv(client, key, f"address\n{address()}\n".encode())).status_code == 200


async def _running(count: int) -> bool | None:
    return IMPORTS.running == count or None
