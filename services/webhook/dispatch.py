"""The dispatcher: posts the queued events, each endpoint on its own, so none waits for another.

Every endpoint has a worker (a task, its own HTTP client and connection pool of at most
``webhook_concurrency`` connections): it claims the endpoint's due posts with a lease, posts
them concurrently, and writes their outcomes together. A black-holed or failing endpoint only
ever holds its own worker. A new event wakes its endpoint's worker at once; a poll of the queue
every ``webhook_poll_seconds`` finds retries come due and rows queued by other processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram

from libs.batch import Outbox
from libs.broker import Broker, retry_forever
from libs.settings import Settings
from libs.topics import NOTICES, public_topic
from libs.tracing import record_span, trace_headers
from libs.webhook_endpoints import Endpoint, disable_endpoint, endpoint_by_id
from libs.webhook_queue import (
    RESPONSE_EXCERPT,
    Attempted,
    Claimed,
    claim,
    due_endpoints,
    forget_settled,
    record,
    release,
)
from libs.webhook_targets import TargetGuard, TargetRefused
from schemas.notices import Notice, NoticeData, NoticeType, notice_id
from services.webhook.delivery import (
    Answer,
    PostStatus,
    RetryPolicy,
    Verdict,
    disable_reason,
    verdict,
)
from services.webhook.signing import signature_headers

CONTENT_TYPE = "application/cloudevents+json"
ENDPOINT_REREAD_SECONDS = 1.0
"""How often a busy worker reads its endpoint again (a rotated secret, a disabled endpoint)."""
SWEEP_EVERY_POLLS = 300
"""Settled posts past their keeping time are deleted every this many polls."""

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

POSTS = Counter(
    "sendarix_webhook_posts_total",
    "Webhook posts by outcome (delivered, retry, failed) and endpoints disabled (disabled).",
    ["outcome"],
)
POST_SECONDS = Histogram(
    "sendarix_webhook_post_seconds",
    "How long a webhook post took, answered or not.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
QUEUE_DUE = Gauge("sendarix_webhook_queue_due", "Queued webhook posts due and not leased.")
OUTCOME_LABEL = {
    PostStatus.DELIVERED: "delivered",
    PostStatus.PENDING: "retry",
    PostStatus.FAILED: "failed",
}


class Dispatcher:
    """The workers of every endpoint with something due, and the poll that wakes them."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, broker: Broker) -> None:
        self.settings = settings
        self.pool = pool
        self.broker = broker
        self.guard = TargetGuard(settings)
        self.policy = RetryPolicy.of(settings)
        self.workers: dict[uuid.UUID, EndpointWorker] = {}
        self._polling: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._polling = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        """Stop posting; posts claimed and not made go back to the queue."""
        tasks = [w.task for w in self.workers.values()]
        if self._polling is not None:
            tasks.append(self._polling)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for worker in self.workers.values():
            await worker.client.aclose()

    def wake(self, endpoint_ids: Iterable[uuid.UUID]) -> None:
        """Have these endpoints' workers look for due posts now."""
        for endpoint_id in endpoint_ids:
            worker = self.workers.get(endpoint_id)
            if worker is None:
                worker = self.workers[endpoint_id] = EndpointWorker(self, endpoint_id)
            worker.wake.set()

    async def _poll(self) -> None:
        polls = 0
        while True:
            try:
                due = await due_endpoints(self.pool)
                QUEUE_DUE.set(sum(due.values()))
                self.wake(due)
                polls += 1
                if polls % SWEEP_EVERY_POLLS == 0:
                    await forget_settled(self.pool)
            except Exception as error:  # the database restarting: the next poll tries again
                log.warning("webhook queue poll failed: %r", error)
            await asyncio.sleep(self.settings.webhook_poll_seconds)

    async def announce_disabled(self, endpoint: Endpoint) -> None:
        """Tell the endpoint's tenant (``sendarix.notices``; its other endpoints get it)."""
        assert endpoint.disabled_at is not None
        notice = Notice(
            id=notice_id(
                NoticeType.WEBHOOK_DISABLED, endpoint.id, endpoint.disabled_at.isoformat()
            ),
            source="/sendarix/webhook",
            type=NoticeType.WEBHOOK_DISABLED,
            subject=endpoint.id,
            time=endpoint.disabled_at,
            data=NoticeData(
                tenant_id=endpoint.tenant_id,
                kind="endpoint_disabled",
                key=endpoint.id,
                reason=endpoint.disabled_reason,
                details={"url": endpoint.url},
            ),
        )
        outbox = Outbox(self.settings.topic_prefix)
        outbox.add(
            None,
            public_topic(NOTICES, self.settings.topic_prefix),
            notice.model_dump_json().encode(),
            endpoint.tenant_id.encode(),
        )
        await retry_forever(
            "publish a disabled-endpoint notice",
            lambda: self.broker.send_confirmed(outbox.publications),
        )
        POSTS.labels("disabled").inc()


class EndpointWorker:
    """Posts one endpoint's queued events, at most ``webhook_concurrency`` at once."""

    def __init__(self, dispatcher: Dispatcher, endpoint_id: uuid.UUID) -> None:
        self.dispatcher = dispatcher
        self.endpoint_id = endpoint_id
        settings = dispatcher.settings
        self.concurrency = settings.webhook_concurrency
        self.client = httpx.AsyncClient(
            timeout=settings.webhook_timeout_seconds,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=self.concurrency),
        )
        self.rng = random.Random()
        self.failing = False
        """The last round failed: claim a few posts at a time until it recovers."""
        self.wake = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            try:
                await self._drain()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the database restarting: the poll wakes us again
                log.warning("webhook worker of %s: %r", self.endpoint_id, error)

    async def _drain(self) -> None:
        """Post the endpoint's due rows until none is left, pipelined: the next batch is claimed
        and the finished posts' outcomes written while the last posts of a batch are in flight,
        so the endpoint's connections never wait for the database."""
        pool = self.dispatcher.pool
        endpoint = await endpoint_by_id(pool, self.endpoint_id)
        read_at = time.monotonic()
        gate = asyncio.Semaphore(self.concurrency)
        finished: list[tuple[Attempted, Verdict]] = []
        in_flight: set[asyncio.Task[None]] = set()
        leased: set[uuid.UUID] = set()
        try:
            while True:
                if finished:
                    outcomes, finished[:] = list(finished), []
                    leased.difference_update(a.event_id for a, _ in outcomes)
                    if await self._record(outcomes):
                        endpoint = None
                if time.monotonic() - read_at > ENDPOINT_REREAD_SECONDS and endpoint is not None:
                    endpoint, read_at = (
                        await endpoint_by_id(pool, self.endpoint_id),
                        time.monotonic(),
                    )
                usable = endpoint if endpoint is not None and endpoint.enabled else None
                claimed = await self._claim() if usable is not None else []
                if not claimed and not in_flight:
                    if not finished:
                        return
                    continue
                leased.update(row.event_id for row in claimed)
                for row in claimed:
                    assert usable is not None
                    await gate.acquire()
                    task = asyncio.create_task(self._post(gate, usable, row, finished))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                if not claimed:
                    await asyncio.wait(in_flight)
        except asyncio.CancelledError:
            for task in in_flight:
                task.cancel()
            await asyncio.shield(release(pool, self.endpoint_id, list(leased)))
            raise

    async def _claim(self) -> list[Claimed]:
        settings = self.dispatcher.settings
        limit = self.concurrency if self.failing else settings.webhook_claim_batch
        lease = timedelta(
            seconds=settings.webhook_timeout_seconds * math.ceil(limit / self.concurrency) + 30
        )
        return await claim(self.dispatcher.pool, self.endpoint_id, limit, lease)

    async def _record(self, outcomes: list[tuple[Attempted, Verdict]]) -> bool:
        """Write the outcomes; True when they disable the endpoint."""
        pool = self.dispatcher.pool
        failures, since = await record(pool, self.endpoint_id, [a for a, _ in outcomes])
        self.failing = failures > 0
        now = datetime.now(UTC)
        reason = next((v.disable for _, v in outcomes if v.disable), None) or disable_reason(
            failures, since, now, self.dispatcher.policy
        )
        if reason is None:
            return False
        disabled = await disable_endpoint(pool, self.endpoint_id, reason)
        if disabled is not None:
            log.warning("webhook endpoint %s disabled: %s", self.endpoint_id, reason)
            await self.dispatcher.announce_disabled(disabled)
        return True

    async def _post(
        self,
        gate: asyncio.Semaphore,
        endpoint: Endpoint,
        claimed: Claimed,
        finished: list[tuple[Attempted, Verdict]],
    ) -> None:
        """Post one event (``gate`` acquired for it), as a span of its message's trace."""
        try:
            parent = record_span([("traceparent", (claimed.traceparent or "").encode())])
            attributes = {"sendarix.event": claimed.event_type, "sendarix.endpoint": endpoint.id}
            with tracer.start_as_current_span(
                "webhook deliver", context=trace.set_span_in_context(parent), attributes=attributes
            ):
                started = time.monotonic()
                now = datetime.now(UTC)
                answer, excerpt = await self._send(endpoint, claimed, now)
                took = time.monotonic() - started
        finally:
            gate.release()
        POST_SECONDS.observe(took)
        first = claimed.first_attempt_at or now
        decided = verdict(
            answer, claimed.attempts + 1, first, datetime.now(UTC), self.dispatcher.policy, self.rng
        )
        POSTS.labels(OUTCOME_LABEL[decided.status]).inc()
        attempted = Attempted(
            event_id=claimed.event_id,
            event_type=claimed.event_type,
            attempted_at=now,
            status=decided.status.value,
            due_at=decided.due_at,
            code=answer.code,
            latency_ms=round(took * 1000),
            response=excerpt,
            error=answer.error,
        )
        finished.append((attempted, decided))

    async def _send(
        self, endpoint: Endpoint, claimed: Claimed, now: datetime
    ) -> tuple[Answer, str | None]:
        """Post to the endpoint's checked address (never following a redirect); the answer and
        the first KiB of its body."""
        event_id = str(claimed.event_id)
        headers = signature_headers(endpoint.secrets(now), event_id, now, claimed.body)
        headers["content-type"] = CONTENT_TYPE
        headers |= trace_headers()
        try:
            target = await self.dispatcher.guard.target(endpoint.url)
            headers["host"] = target.host_header
            extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else {}
            request = self.client.build_request(
                "POST", target.url, content=claimed.body, headers=headers, extensions=extensions
            )
            response = await self.client.send(request, stream=True)
            try:
                excerpt = await _excerpt(response)
            finally:
                await response.aclose()
        except TargetRefused as refused:
            return Answer(None, f"{refused.code}: {refused.detail}"), None
        except httpx.HTTPError as error:  # network errors and timeouts
            return Answer(None, f"{type(error).__name__}: {error}".rstrip(": ")), None
        code = response.status_code
        refusal = None if response.is_success else f"HTTP {code} {response.reason_phrase}".rstrip()
        return Answer(code, refusal, response.headers.get("retry-after")), excerpt


async def _excerpt(response: httpx.Response) -> str | None:
    """The first KiB of a response's body (the rest is not read)."""
    read = b""
    async for chunk in response.aiter_raw():
        read += chunk
        if len(read) >= RESPONSE_EXCERPT:
            break
    # PostgreSQL text holds no NUL: an endpoint answering one must not fail its own log.
    return read[:RESPONSE_EXCERPT].decode("utf-8", "replace").replace("\x00", "\ufffd") or None
