"""The chaos run's figures are counted right from what the run saw."""

from __future__ import annotations

from collections import Counter

from schemas.events import MessageState
from tests.chaos.tally import DELIVERY_OUTCOME_UNKNOWN, TerminalEvent, received_ids, tally

A, B, C, D = (f"00000000-0000-4000-8000-00000000000{n}" for n in range(1, 5))
DELIVERED = TerminalEvent(MessageState.DELIVERED)
UNKNOWN = TerminalEvent(MessageState.FAILED, DELIVERY_OUTCOME_UNKNOWN)


def test_message_ids_are_read_from_message_id_headers() -> None:
    headers = [f"<{A}@example.test>", f"<{A.upper()}@example.test>", f"<{B}@x>", "<other@x>"]
    assert received_ids(headers) == Counter({A: 2, B: 1})


def test_a_clean_run_counts_nothing_lost_or_duplicated() -> None:
    figures = tally(
        [A, B],
        untraced=0,
        refused=0,
        terminal={A: [DELIVERED], B: [UNKNOWN]},
        received=Counter({A: 1, B: 1}),
    )
    assert figures.clean
    assert (figures.accepted, figures.lost, figures.duplicated) == (2, 0, 0)
    assert figures.outcome_unknown == 1
    assert figures.outcomes == {"delivered": 1, "failed": 1}


def test_losses_duplicates_and_two_endings_are_each_counted() -> None:
    figures = tally(
        [A, B, C],
        untraced=2,
        refused=1,
        terminal={A: [DELIVERED, UNKNOWN], B: [DELIVERED]},
        received=Counter({A: 2, D: 1}),
    )
    assert not figures.clean
    assert figures.accepted == 5
    assert figures.lost == 3  # C, and the two topic records ingest never took in
    assert figures.duplicated == 1
    assert figures.conflicting == 1
    assert figures.delivered_unseen == 1  # B
    assert figures.received_unaccepted == 1  # D
