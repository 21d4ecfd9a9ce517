"""What a chaos run found, counted from the run's own records: pure functions, no I/O."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from schemas.events import MessageState

DELIVERY_OUTCOME_UNKNOWN = "delivery_outcome_unknown"
"""The sender's honest answer when it died between SMTP ``DATA`` and the reply."""

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class TerminalEvent:
    """One terminal event recorded for a message."""

    state: MessageState
    code: str | None = None
    """The problem code of a ``failed`` or ``rejected`` event."""


@dataclass(frozen=True)
class ChaosFigures:
    """The outcome of one run. ``lost`` and ``duplicated`` should both be zero."""

    accepted: int
    """Answered 202, or acknowledged by the broker (acks=all) on the send-requests topic."""
    refused: int
    """Requests the gateway refused outright (neither accepted nor worth a retry)."""
    lost: int
    """Accepted messages without a terminal state when the drain ended."""
    duplicated: int
    """Message-IDs the mailbox received more than once."""
    conflicting: int
    """Messages with more than one distinct terminal state."""
    outcome_unknown: int
    """Messages ``failed`` with ``delivery_outcome_unknown`` (a kill between DATA and reply)."""
    delivered_unseen: int
    """Messages reported delivered that the mailbox never received."""
    received: int
    """Distinct Message-IDs the mailbox received."""
    received_unaccepted: int
    """Messages the mailbox received although the client was never told they were accepted."""
    outcomes: dict[str, int] = field(default_factory=dict)
    """How many messages ended in each terminal state."""

    @property
    def clean(self) -> bool:
        """Nothing lost, nothing sent twice, no message with two endings."""
        return self.lost == 0 and self.duplicated == 0 and self.conflicting == 0


def received_ids(message_id_headers: Collection[str]) -> Counter[str]:
    """How often the mailbox received each Sendarix message id, from its Message-ID headers."""
    return Counter(
        found.group(0)
        for header in message_id_headers
        if (found := _UUID.search(header.lower())) is not None
    )


def tally(
    accepted: Collection[str],
    untraced: int,
    refused: int,
    terminal: Mapping[str, Collection[TerminalEvent]],
    received: Counter[str],
) -> ChaosFigures:
    """Count a run's figures.

    ``accepted``: the ids of every accepted message that got one; ``untraced``: accepted
    topic records that never got an id (ingest never took them in: lost as well);
    ``terminal``: the terminal events recorded per message id; ``received``: the mailbox's count
    per message id.
    """
    endings = {message_id: terminal.get(message_id, ()) for message_id in accepted}
    states = {
        message_id: {event.state for event in events} for message_id, events in endings.items()
    }
    outcomes = Counter(state.value for found in states.values() for state in found)
    unknown = sum(
        any(event.code == DELIVERY_OUTCOME_UNKNOWN for event in events)
        for events in endings.values()
    )
    return ChaosFigures(
        accepted=len(accepted) + untraced,
        refused=refused,
        lost=untraced + sum(not found for found in states.values()),
        duplicated=sum(count > 1 for count in received.values()),
        conflicting=sum(len(found) > 1 for found in states.values()),
        outcome_unknown=unknown,
        delivered_unseen=sum(
            MessageState.DELIVERED in found and received[message_id] == 0
            for message_id, found in states.items()
        ),
        received=len(received),
        received_unaccepted=len(received.keys() - set(accepted)),
        outcomes=dict(sorted(outcomes.items())),
    )
