"""How a message's status moves as its events arrive at the recorder.

Events of one message share a partition, but two stages may report it in either order (render
can report ``rendered`` before ingest's own ``accepted`` is on the topic), and any event may
arrive twice. So a status never moves back: a terminal state is final, except that a complaint,
an unsubscribe or an asynchronous bounce may follow ``delivered``; before that, a later stage
outranks an earlier one.
"""

from __future__ import annotations

from schemas.events import MessageState

FEEDBACK = frozenset({MessageState.COMPLAINED, MessageState.UNSUBSCRIBED})
"""What a recipient reports about a delivered message."""
AFTER_DELIVERY = FEEDBACK | {MessageState.BOUNCED}
"""What may follow ``delivered``: feedback, and a bounce the receiving side reported later (an
asynchronous DSN after its 250)."""

PROGRESS: dict[MessageState, int] = {
    MessageState.ACCEPTED: 0,
    MessageState.RENDERED: 1,
    MessageState.HELD: 2,
    MessageState.ROUTED: 3,
    MessageState.DEFERRED: 4,
    MessageState.DELAYED: 4,
}
"""The order of the states a message passes through on its way to a final one."""


def next_status(current: MessageState | None, incoming: MessageState) -> MessageState:
    """The status of a message in ``current`` once an event reporting ``incoming`` arrives."""
    if current is None or current == incoming:
        return incoming
    if current.terminal:
        return (
            incoming
            if current is MessageState.DELIVERED and incoming in AFTER_DELIVERY
            else current
        )
    if current in FEEDBACK:
        return incoming if incoming in FEEDBACK else current
    if incoming.terminal or incoming in FEEDBACK:
        return incoming
    return incoming if PROGRESS[incoming] > PROGRESS[current] else current
