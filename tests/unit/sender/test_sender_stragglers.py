"""When an unclaimed attempt of a lane's batch is given up on for ``deliver-slow``."""

from __future__ import annotations

import pytest

from services.sender.stragglers import RECENT_EXCHANGES, BatchProgress, ExchangeTimes


def progress(attempts: int = 5) -> BatchProgress:
    return BatchProgress(budget=2.0, grace=0.2, in_flight=attempts)


def test_an_attempt_is_given_up_on_once_the_batch_moved_on_without_it() -> None:
    batch = progress()
    batch.finished(10.3)  # the others finished while it waited

    assert not batch.gives_up(10.0, 10.4)
    assert batch.gives_up(10.0, 10.51)


def test_the_rest_of_a_quick_batch_being_done_is_enough() -> None:
    batch = progress()
    batch.finished(10.03)  # the others were done 30 ms after it began

    assert not batch.gives_up(10.0, 10.2)
    assert batch.gives_up(10.0, 10.24)


def test_a_stall_of_the_whole_batch_waits_for_the_budget() -> None:
    batch = progress()
    batch.finished(9.9)  # nothing finished since it began: everything is stalled alike

    assert not batch.gives_up(10.0, 11.9)
    assert batch.gives_up(10.0, 12.0)


def test_an_attempt_alone_in_its_batch_waits_for_the_budget_when_nothing_waits_behind() -> None:
    batch = progress(attempts=1)

    assert batch.alone(10.0, 10.21)
    assert not batch.gives_up(10.0, 11.99, waited_on=False)
    assert batch.gives_up(10.0, 12.0, waited_on=False)


def test_an_attempt_alone_in_its_batch_is_given_up_on_when_the_lane_waits_behind_it() -> None:
    batch = progress(attempts=1)

    assert not batch.alone(10.0, 10.19)
    assert not batch.gives_up(10.0, 10.19, waited_on=True)
    assert batch.gives_up(10.0, 10.21, waited_on=True)


def test_an_attempt_is_not_alone_while_others_of_its_batch_are_in_flight() -> None:
    batch = progress(attempts=3)
    batch.finished(9.9)  # one was done before it began; another is still in flight

    assert not batch.alone(10.0, 10.5)
    batch.finished(9.95)
    assert batch.alone(10.0, 10.5)


def test_progress_keeps_the_latest_finish_and_the_next_look_is_never_past_the_budget() -> None:
    batch = progress()
    batch.finished(10.5)
    batch.finished(10.3)

    assert batch.last_finish == 10.5
    assert batch.in_flight == 3
    assert batch.next_look(10.0, 10.5) == 0.2
    assert abs(batch.next_look(10.0, 11.9) - 0.1) < 1e-9
    assert batch.next_look(10.0, 12.5) == 0.0


def test_an_attempt_queued_for_a_connection_waits_while_the_site_finishes_exchanges() -> None:
    batch = progress()

    assert not batch.waits_too_long(10.0, site_finished=11.5, now=13.0)
    assert not batch.waits_too_long(10.0, site_finished=float("-inf"), now=11.9)


def test_an_attempt_queued_behind_hanging_exchanges_is_given_up_on_after_the_budget() -> None:
    batch = progress()

    assert batch.waits_too_long(10.0, site_finished=float("-inf"), now=12.0)
    assert batch.waits_too_long(10.0, site_finished=10.5, now=12.5)


def test_the_grace_is_the_setting_until_exchanges_were_measured() -> None:
    assert ExchangeTimes().grace(0.2, 2.0) == 0.2


def test_quick_exchanges_leave_the_grace_at_the_setting() -> None:
    times = ExchangeTimes()
    for _ in range(100):
        times.add(0.01)

    assert times.grace(0.2, 2.0) == 0.2


def test_a_loaded_process_gives_each_exchange_more_grace_up_to_the_budget() -> None:
    times = ExchangeTimes()
    for _ in range(100):
        times.add(0.15)
    assert times.grace(0.2, 2.0) == pytest.approx(0.75)

    for _ in range(RECENT_EXCHANGES):
        times.add(1.0)
    assert times.grace(0.2, 2.0) == 2.0


def test_one_slow_site_among_quick_ones_does_not_move_the_yardstick() -> None:
    times = ExchangeTimes()
    for index in range(200):
        times.add(30.0 if index % 10 == 0 else 0.02)

    assert times.grace(0.2, 2.0) == 0.2
