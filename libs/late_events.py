"""Events about a message after its journey through the pipeline — cancelled through the API,
bounced later (a DSN), complained about, unsubscribed — reported from its log row, in its trace.

Such an event comes from a door (an HTTP request, an inbound mail), not from a record of the
pipeline, so there is no record's trace to continue: the event is stamped with a span in the
message's own trace (its id is in the log), so ``sendarix trace`` shows what came back too.
Each state is reported once per message (``attempt`` is not set: the event id is the message's
and the state's), so a repeated request or a re-delivered report is one event.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from typing import Any

import asyncpg
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from libs.batch import Outbox
from libs.broker import Broker
from libs.message_log import logged_event_data
from libs.tracing import traceparent
from schemas.events import DeliveryEvent, MessageState

PUBLISH_TIMEOUT_SECONDS = 10.0


def _in_message_trace(trace_id: str, message_id: str) -> trace.Span:
    """A stand-in parent in the message's trace (the span it hangs off is not known here: its
    id is derived from the message's)."""
    parent_id = int(uuid.UUID(message_id).hex[:16], 16) or 1
    context = SpanContext(
        int(trace_id, 16), parent_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    return NonRecordingSpan(context)


async def report_logged(
    broker: Broker,
    prefix: str,
    row: asyncpg.Record,
    state: MessageState,
    service: str,
    **details: Any,
) -> DeliveryEvent:
    """Publish the event reporting ``state`` of the logged message ``row`` (with ``details``)
    and wait for the broker to hold it; a span of ``service`` in the message's trace records it."""
    outbox = Outbox(prefix)
    event = outbox.emit(None, state, logged_event_data(row, service, **details))
    parent = trace.set_span_in_context(_in_message_trace(row["trace_id"], str(row["id"])))
    tracer = trace.get_tracer(service)
    with tracer.start_as_current_span(service, context=parent, kind=SpanKind.SERVER) as span:
        span.set_attributes({"sendarix.message_id": event.subject, "sendarix.event": state.value})
        headers = traceparent(trace.set_span_in_context(span))
        publications = [replace(p, headers=[*p.headers, *headers]) for p in outbox.publications]
        async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
            await broker.send_confirmed(publications)
    return event
