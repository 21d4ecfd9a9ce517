"""The HTTP gateway: ``POST /v1/messages``, ``GET /v1/messages/{id}`` and the health probes.

Every error is an RFC 9457 problem document (``problems.py``); bad input is never a 500. The
body is read and parsed here rather than by FastAPI, so that its size, media type, JSON syntax
and fields each get their own status and code, with a JSON pointer per bad field.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Annotated, Any

from aiokafka.errors import KafkaError
from fastapi import APIRouter, FastAPI, Header, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Link, SpanContext
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from libs.database import DATABASE_DOWN
from libs.message_log import read_message
from libs.metrics import exposition
from libs.priority import LANE_RANK, gate
from libs.tenants import Caller
from schemas.send import AcceptedResponse, SendRequest
from services.ingest import (
    routes_analytics,
    routes_domains,
    routes_experiments,
    routes_held,
    routes_layouts,
    routes_me,
    routes_messages,
    routes_queues,
    routes_routes,
    routes_rules,
    routes_suppressions,
    routes_templates,
    routes_unsubscribe,
    routes_webhooks,
)
from services.ingest.accept import (
    Ingest,
    Outcome,
    Ready,
    Refused,
    Replayed,
    accept,
    prepare,
    publish,
)
from services.ingest.http_deps import (
    COMPONENT_REF,
    IngestDep,
    ReadCaller,
    SendCaller,
    charge_send,
    json_body,
    problems,
    seen_as,
)
from services.ingest.ids import fresh_message_ids
from services.ingest.lanes import requested_rank_lane
from services.ingest.problems import ProblemDocument, ProblemError
from services.ingest.routes_keys import router as keys_router
from services.ingest.validate import (
    Violation,
    check_idempotency_key,
    parse_body,
    parse_request,
    pointer,
)
from services.ingest.views import MessageView

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

MAX_BATCH_MESSAGES = 500
BATCH_CHUNK = 25
"""Requests of a batch accepted together, between two chances for more urgent work to go."""
PROBE_TIMEOUT_SECONDS = 2.0

SEND_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": COMPONENT_REF.format(model="SendRequest")}}
        },
    }
}
"""The body of ``POST /v1/messages`` in the OpenAPI document (the route parses it itself)."""

router = APIRouter()


def _accepted(response: AcceptedResponse, replayed: bool = False) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse(response.model_dump(mode="json"), status_code=202, headers=headers)


@router.post(
    "/v1/messages",
    status_code=202,
    response_model=AcceptedResponse,
    responses=problems(400, 401, 403, 409, 413, 415, 422, 429, 503),
    openapi_extra=SEND_REQUEST_BODY,
    summary="Send a message (one per recipient)",
)
async def send_message(
    request: Request,
    ingest: IngestDep,
    caller: SendCaller,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Accept a message for each recipient; answered once the broker holds them."""
    if idempotency_key is not None and (reason := check_idempotency_key(idempotency_key)):
        raise ProblemError("invalid_idempotency_key", reason)
    parsed = parse_request(await json_body(request), SendRequest)
    if isinstance(parsed, list):
        raise ProblemError.of(parsed)
    charge_send(ingest, caller, len(parsed.to))
    async with gate.turn(LANE_RANK[requested_rank_lane(parsed)]):
        outcome = await _accept_or_unavailable(ingest, caller, parsed, idempotency_key)
    if isinstance(outcome, Refused):
        raise ProblemError.of(outcome.violations)
    return _accepted(outcome.response, replayed=isinstance(outcome, Replayed))


async def _accept_or_unavailable(
    ingest: Ingest, caller: Caller, parsed: SendRequest, key: str | None
) -> Outcome:
    """``accept``, with a broker or database that is down answered 503 (nothing was published)."""
    ids = fresh_message_ids(len(parsed.to))
    trace = otel_context.get_current()
    try:
        return await accept(ingest, caller.tenant, parsed, ids, trace, key, caller.key, door="http")
    except (KafkaError, TimeoutError) as error:
        log.warning("the broker did not take %s: %r", ids, error)
        raise ProblemError.unavailable("the broker did not take the message; retry") from error


class BatchRequest(BaseModel):
    """``POST /v1/messages/batch``: up to 500 send requests, each accepted or refused alone."""

    messages: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH_MESSAGES)


class BatchResult(BaseModel):
    """The answer to one request of a batch: what it would have got on its own."""

    status: int
    accepted: AcceptedResponse | None = None
    problem: ProblemDocument | None = None


class BatchResponse(BaseModel):
    """One result per request of the batch, in order."""

    results: list[BatchResult]


@router.post(
    "/v1/messages/batch",
    response_model=BatchResponse,
    responses=problems(400, 401, 403, 413, 415, 422, 429, 503),
    summary="Send up to 500 messages; one result per message, in order",
)
async def send_batch(request: Request, ingest: IngestDep, caller: SendCaller) -> BatchResponse:
    """Accept each request of the batch as ``POST /v1/messages`` would, all of them at once.

    The answer is 200 with a result per request (202 with its ids, or its problem document);
    a request that fails leaves the others accepted. 503 only when nothing was published.
    """
    parsed = parse_request(await json_body(request), BatchRequest)
    if isinstance(parsed, list):
        raise ProblemError.of(parsed)
    results: list[BatchResult | None] = [None] * len(parsed.messages)
    acceptable: list[tuple[int, SendRequest]] = []
    for index, body in enumerate(parsed.messages):
        item = parse_body(body, SendRequest, pointer("messages", index))
        if isinstance(item, list):
            results[index] = _refusal(item)
        else:
            acceptable.append((index, item))
    charge_send(ingest, caller, sum(len(item.to) for _, item in acceptable))
    batch_span = trace.get_current_span().get_span_context()
    prepared: list[tuple[int, Ready]] = []
    for first in range(0, len(acceptable), BATCH_CHUNK):
        chunk = acceptable[first : first + BATCH_CHUNK]
        rank = min(LANE_RANK[requested_rank_lane(item)] for _, item in chunk)
        async with gate.turn(rank):
            outcomes = await asyncio.gather(
                *(_prepare_in_batch(ingest, caller, item, batch_span) for _, item in chunk)
            )
        for (index, _), outcome in zip(chunk, outcomes, strict=True):
            if isinstance(outcome, Ready):
                prepared.append((index, outcome))
            else:
                results[index] = _refusal(outcome.violations)
        await asyncio.sleep(0)  # an OTP request waiting on the event loop goes next
    for (index, ready), failure in zip(
        prepared, await _publish_batch(ingest, prepared), strict=True
    ):
        results[index] = (
            BatchResult(status=202, accepted=ready.response)
            if failure is None
            else _unavailable(failure)
        )
    return BatchResponse(results=[r for r in results if r is not None])


async def _prepare_in_batch(
    ingest: Ingest, caller: Caller, item: SendRequest, batch_span: SpanContext
) -> Ready | Refused:
    """One request of a batch made ready, in a trace of its own (linked to the batch's): one
    trace per message, whichever door it came through."""
    with _tracer.start_as_current_span(
        "accept batch item", context=Context(), links=[Link(batch_span)]
    ):
        ids = fresh_message_ids(len(item.to))
        prepared = await prepare(
            ingest,
            caller.tenant,
            item,
            ids,
            otel_context.get_current(),
            None,
            caller.key,
            door="batch",
        )
    assert not isinstance(prepared, Replayed), "a request without an idempotency key"
    return prepared


async def _publish_batch(
    ingest: Ingest, prepared: list[tuple[int, Ready]]
) -> list[BaseException | None]:
    """Every prepared request of a batch published together: one outcome each."""
    if not prepared:
        return []
    try:
        return await publish(ingest, [ready for _, ready in prepared])
    except (KafkaError, TimeoutError) as error:
        log.warning("the broker did not take a batch of %d requests: %r", len(prepared), error)
        return [error] * len(prepared)


def _unavailable(failure: BaseException) -> BatchResult:
    problem = ProblemError.unavailable(f"the broker did not take this message ({failure!r}); retry")
    return BatchResult(status=problem.status, problem=problem.document())


def _refusal(violations: list[Violation]) -> BatchResult:
    problem = ProblemError.of(violations)
    return BatchResult(status=problem.status, problem=problem.document())


@router.get(
    "/v1/messages/{message_id}",
    response_model=MessageView,
    responses=problems(401, 403, 404),
    summary="A message's status and timeline",
)
async def get_message(message_id: str, ingest: IngestDep, caller: ReadCaller) -> MessageView:
    """The message, if it is the caller's (an operator's key: any tenant's), with every event
    that happened to it."""
    not_found = ProblemError("not_found", f"no message {message_id!r}")
    try:
        uuid.UUID(message_id)
    except ValueError:
        raise not_found from None
    found = await read_message(ingest.pool, message_id, seen_as(ingest, caller))
    if found is None:
        raise not_found
    return MessageView.of(*found)


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses=problems(503), summary="The database and the broker answer")
async def readyz(ingest: IngestDep) -> dict[str, str]:
    failing = []
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            await ingest.pool.fetchval("SELECT 1")
    except DATABASE_DOWN:
        failing.append("database")
    if not await ingest.broker.ping(timeout=PROBE_TIMEOUT_SECONDS):
        failing.append("broker")
    if failing:
        raise ProblemError("not_ready", f"not answering: {', '.join(failing)}")
    return {"status": "ready"}


async def metrics(request: Request) -> Response:
    """This process's Prometheus metrics, when the gateway serves them (``metrics_public``)."""
    body, content_type = exposition(request.headers.get("accept"))
    return Response(body, media_type=content_type)


class Gateway(FastAPI):
    """The FastAPI app, with an OpenAPI document that says what the routes really take.

    The send body is described with its public field names (``from``); errors are problem
    documents, so FastAPI's own validation-error schema, which no client ever gets, is dropped.
    """

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            document = get_openapi(
                title=self.title,
                version=self.version,
                description=self.description,
                routes=self.routes,
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for model in (SendRequest, ProblemDocument):
                schema = model.model_json_schema(by_alias=True, ref_template=COMPONENT_REF)
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            for operations in document["paths"].values():
                for operation in operations.values():
                    if (
                        operation["responses"].get("422", {}).get("description")
                        == "Validation Error"
                    ):
                        del operation["responses"]["422"]
            self.openapi_schema = document
        return self.openapi_schema


HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def build_api(tracer_provider: TracerProvider) -> Gateway:
    """The gateway app; its ``state.ingest`` is set once the service has started."""
    app = Gateway(
        title="Sendarix",
        version="1",
        description="Transactional email: send a message, follow it to the inbox.",
    )
    app.include_router(router)
    app.include_router(keys_router)
    app.include_router(routes_me.router)
    app.include_router(routes_domains.router)
    app.include_router(routes_messages.router)
    app.include_router(routes_rules.router)
    app.include_router(routes_routes.router)
    app.include_router(routes_held.router)
    app.include_router(routes_unsubscribe.router)
    app.include_router(routes_suppressions.router)
    app.include_router(routes_analytics.router)
    app.include_router(routes_queues.router)
    app.include_router(routes_webhooks.router)
    app.include_router(routes_templates.router)
    app.include_router(routes_experiments.router)
    app.include_router(routes_layouts.router)

    @app.exception_handler(ProblemError)
    async def problem(request: Request, error: ProblemError) -> Response:
        return error.response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        code = HTTP_CODES.get(error.status_code, "http_error")
        return ProblemError(code, str(error.detail), status=error.status_code).response()

    async def broker_down(request: Request, error: Exception) -> Response:
        """A broker that does not answer, or a publish that timed out waiting for it: 503."""
        log.warning("broker unavailable: %r", error)
        return ProblemError.unavailable("the broker is not answering; retry").response()

    for kind in (KafkaError, TimeoutError):
        app.add_exception_handler(kind, broker_down)

    async def database_down(request: Request, error: Exception) -> Response:
        log.warning("database unavailable: %r", error)
        return ProblemError.unavailable("the database is not answering; retry").response()

    for kind in DATABASE_DOWN:
        app.add_exception_handler(kind, database_down)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> Response:
        return ProblemError("internal_error", "something broke on our side", status=500).response()

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=tracer_provider,
        excluded_urls="healthz,readyz,metrics",
        exclude_spans=["receive", "send"],
    )
    return app
