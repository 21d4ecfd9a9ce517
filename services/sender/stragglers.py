"""When an attempt of a ``deliver.<lane>`` batch is given up on and sent to ``deliver-slow``.

A batch commits once all its attempts are done, so one destination slow to answer holds every
message of the lane behind it. An attempt that has not reached its claim (nothing was sent) is
abandoned once it has waited the whole budget, or sooner once it holds the lane alone:

- the rest of the batch moved on without it: other attempts finished after it began, and none
  for ``grace`` since;
- or it was alone from the start (the only attempt of the batch in flight) for ``grace``, while
  records of the lane wait behind the batch (the consumer's last fetch saw them).

A moment when nothing answers at all (the database, the CPU) stalls every attempt of a batch
alike, so no other attempt finishes and none is given up on before its budget; only an attempt
alone in flight can be mistaken for slow, and then its site is tried again in the lane as soon
as ``deliver-slow`` finds it quick.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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

    def alone(self, started: float, now: float) -> bool:
        """Whether the attempt begun at ``started`` has been the batch's only one not done for
        ``grace`` (whether anything waits behind the batch is then worth asking)."""
        return self.in_flight == 1 and now - started >= self.grace

    def next_look(self, started: float, now: float) -> float:
        """Seconds until the attempt's case is worth looking at again."""
        return max(0.0, min(self.grace, started + self.budget - now))
