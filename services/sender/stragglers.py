"""When an attempt of a ``deliver.<lane>`` batch is given up on and sent to ``deliver-slow``.

A batch commits once all its attempts are done, so one destination slow to answer holds every
message of the lane behind it. An attempt that has not reached its claim (nothing was sent) is
abandoned once its exchange has gone on for the whole budget, or sooner once it holds the lane
alone:

- the rest of the batch moved on without it: other attempts finished after it began, and none
  for ``grace`` since;
- or it was alone from the start (the only attempt of the batch in flight) for ``grace``, while
  records of the lane wait behind the batch (the consumer's last fetch saw them).

The clock of an attempt starts when its exchange does (it holds one of the site's connection
slots), not while it queues for one behind the rest of its batch: a batch of 250 messages to one
site over 8 connections is not a slow site. A queued attempt gives up only when the site has
finished no exchange for the budget (its connections are all held by exchanges that hang).

The grace is measured against this process's own recent exchanges (``ExchangeTimes``): on a
machine so loaded that every exchange takes ten times longer, no site is slow for answering at
the speed of the rest, and mail is not sent round through ``deliver-slow`` (built and signed
again) for it. A site slow among quick ones is still found within the configured grace.

A moment when nothing answers at all (the database, the CPU) stalls every attempt of a batch
alike, so no other attempt finishes and none is given up on before its budget; only an attempt
alone in flight can be mistaken for slow, and then its site is tried again in the lane as soon
as ``deliver-slow`` finds it quick.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

SLOW_FACTOR = 5.0
"""A site is slow when its exchange takes this many times longer than this process's exchanges
usually take (and longer than the configured grace)."""
RECENT_EXCHANGES = 256
"""How many of the latest exchanges ``ExchangeTimes`` measures the usual duration over."""


class ExchangeTimes:
    """How long this process's latest exchanges took, from their connection slot to their end:
    the yardstick a slow site is measured with."""

    def __init__(self) -> None:
        self._recent: deque[float] = deque(maxlen=RECENT_EXCHANGES)

    def add(self, seconds: float) -> None:
        """One exchange ended after ``seconds``."""
        self._recent.append(seconds)

    def grace(self, least: float, budget: float) -> float:
        """The grace of a batch: ``SLOW_FACTOR`` times the median exchange, at least ``least``
        (the setting) and at most the budget."""
        if not self._recent:
            return least
        return min(budget, max(least, SLOW_FACTOR * statistics.median(self._recent)))


@dataclass
class BatchProgress:
    """How far one batch's attempts got: how many are not done, when the last one finished."""

    budget: float
    grace: float
    in_flight: int
    """Attempts of the batch not done yet."""
    last_finish: float = field(default=float("-inf"))

    def finished(self, now: float) -> None:
        """One attempt of the batch is done."""
        self.in_flight -= 1
        self.last_finish = max(self.last_finish, now)

    def gives_up(self, started: float, now: float, waited_on: bool = False) -> bool:
        """Whether an attempt begun at ``started`` and not yet claimed is abandoned ``now``
        (``waited_on``: records of the lane wait behind the batch)."""
        if now - started >= self.budget:
            return True
        if self.last_finish > started:
            return now - self.last_finish >= self.grace
        return waited_on and self.alone(started, now)

    def waits_too_long(self, queued: float, site_finished: float, now: float) -> bool:
        """Whether an attempt queued since ``queued`` for a connection to its site, which last
        finished an exchange at ``site_finished``, is abandoned ``now``."""
        return now - max(queued, site_finished) >= self.budget

    def alone(self, started: float, now: float) -> bool:
        """Whether the attempt begun at ``started`` has been the batch's only one not done for
        ``grace`` (whether anything waits behind the batch is then worth asking)."""
        return self.in_flight == 1 and now - started >= self.grace

    def next_look(self, started: float, now: float) -> float:
        """Seconds until the attempt's case is worth looking at again."""
        return max(0.0, min(self.grace, started + self.budget - now))
