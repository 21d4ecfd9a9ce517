"""When an attempt of a ``deliver.<lane>`` batch is given up on and sent to ``deliver-slow``.

A batch commits once all its attempts are done, so one destination slow to answer holds every
message of the lane behind it. An attempt that has not reached its claim (nothing was sent) is
abandoned once it has waited the whole budget, or sooner once the rest of the batch has moved
on without it: other attempts finished after it began, and none for ``grace`` since. A moment
when nothing answers at all (the database, the CPU) stalls every attempt alike, so no other
attempt finishes and none is given up on before its budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BatchProgress:
    """How far one batch's attempts got: when the last of them finished."""

    budget: float
    grace: float
    last_finish: float = field(default=float("-inf"))

    def finished(self, now: float) -> None:
        """One attempt of the batch is done."""
        self.last_finish = max(self.last_finish, now)

    def gives_up(self, started: float, now: float) -> bool:
        """Whether an attempt begun at ``started`` and not yet claimed is abandoned ``now``."""
        if now - started >= self.budget:
            return True
        return self.last_finish > started and now - self.last_finish >= self.grace

    def next_look(self, started: float, now: float) -> float:
        """Seconds until the attempt's case is worth looking at again."""
        return max(0.0, min(self.grace, started + self.budget - now))
