"""Traffic shaping per destination site: limits, a per-minute token bucket, throttle and slowness.

A site (``services.sender.destinations``: a relay's server, or the MX host group of a provider)
is what a receiving provider counts us against. Each sender keeps the state of the sites it
talks to, per lane: a site that throttles (421, 4.7.x, the providers' own texts) gets its rate
halved at once and given back a quarter at a time while it stays quiet; a site that does not
reach DATA within the budget is SLOW for a while, and its mail goes to ``deliver-slow`` so it
never holds a lane. Plain state over a monotonic clock the caller passes in, so it is tested
without waiting.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from schemas.common import Lane
from schemas.pipeline import SmtpReply


class SiteState(StrEnum):
    """How a site is being treated, as the queue view shows it."""

    NORMAL = "normal"
    THROTTLED = "throttled"
    """It throttled us: its rate is cut."""
    RECOVERING = "recovering"
    """Quiet again: its rate is given back step by step."""
    SLOW = "slow"
    """It did not reach DATA within the budget: its mail goes to ``deliver-slow`` for now."""


class SiteChange(StrEnum):
    """A state change worth an entry in ``queue_events`` (actor ``sender``)."""

    THROTTLED = "site_throttled"
    RELEASED = "site_released"
    SLOW = "site_slow"
    RECOVERED = "site_recovered"


DEFAULT_MESSAGES_PER_CONNECTION = 100
"""Transactions one connection carries before it is closed and a new one opened (what many
receivers allow before they answer 421)."""


@dataclass(frozen=True)
class SiteLimits:
    """What one sender allows itself towards one site and lane."""

    max_connections: int = 8
    messages_per_connection: int = DEFAULT_MESSAGES_PER_CONNECTION
    messages_per_minute: float | None = None
    """None: no limit of its own (its rate is only cut when it throttles)."""

    def as_json(self) -> dict[str, Any]:
        return {
            "max_connections": self.max_connections,
            "messages_per_connection": self.messages_per_connection,
            "messages_per_minute": self.messages_per_minute,
        }


DEFAULT_LIMITS = SiteLimits()

SITE_LIMITS: dict[str, SiteLimits] = {
    # The big mailbox providers (MX sites): generous, but bounded, per sender and lane.
    "google": SiteLimits(max_connections=20, messages_per_connection=100, messages_per_minute=6000),
    "microsoft": SiteLimits(
        max_connections=10, messages_per_connection=50, messages_per_minute=3000
    ),
    "yahoo": SiteLimits(max_connections=10, messages_per_connection=20, messages_per_minute=1800),
    "apple": SiteLimits(max_connections=10, messages_per_connection=50, messages_per_minute=1200),
    # Relay presets, at the limits the providers publish for submission.
    "smtp.gmail.com:587": SiteLimits(3, 100, 60),  # Workspace: 2,000 a day
    "smtp.gmail.com:465": SiteLimits(3, 100, 60),
    "smtp.office365.com:587": SiteLimits(3, 30, 30),  # 30 a minute, 10,000 recipients a day
    "smtp-mail.outlook.com:587": SiteLimits(1, 30, 30),  # Outlook.com: 300 a day
    "smtp.mail.yahoo.com:465": SiteLimits(1, 20, 20),
    "smtp.mail.yahoo.com:587": SiteLimits(1, 20, 20),
}
"""Limits of the sites whose owners publish or are known for them; others get the defaults."""


def site_limits(site: str, overrides: dict[str, SiteLimits] | None = None) -> SiteLimits:
    """The limits of ``site``: an override, a known provider's, or the defaults."""
    if overrides and site in overrides:
        return overrides[site]
    return SITE_LIMITS.get(site, DEFAULT_LIMITS)


_THROTTLE_TEXT = re.compile(
    r"rate limit|too many|try again later|throttl|slow down|temporarily deferred"
    r"|4\.7\.28|4\.7\.650",
    re.IGNORECASE,
)
_GREYLISTING = re.compile(r"gr[ae]y ?list", re.IGNORECASE)


def speaks_of_rate(reply: SmtpReply) -> bool:
    """Whether a reply's status or wording says we send too fast: a 4.7.x or a provider's known
    text. A status of the recipient's address or mailbox (4.1.x, 4.2.x: "mailbox full, try again
    later") and greylisting (the recipient's first sight of us) are not about our rate."""
    status = reply.enhanced_status or ""
    if status.startswith(("4.1.", "4.2.")) or _GREYLISTING.search(reply.text):
        return False
    return status.startswith("4.7.") or bool(_THROTTLE_TEXT.search(f"{status} {reply.text}"))


def is_throttle(reply: SmtpReply) -> bool:
    """Whether a deferral throttles the site: a 421 or a deferral speaking of rate."""
    if not 400 <= reply.code < 500:
        return False
    return speaks_of_rate(reply) or (reply.code == 421 and not _GREYLISTING.search(reply.text))


@dataclass
class TokenBucket:
    """``rate_per_minute`` messages a minute, in bursts of at most a second's worth (at least 1)."""

    rate_per_minute: float
    tokens: float
    at: float

    @classmethod
    def full(cls, rate_per_minute: float, now: float) -> TokenBucket:
        bucket = cls(rate_per_minute, 0.0, now)
        bucket.tokens = bucket.capacity
        return bucket

    @property
    def capacity(self) -> float:
        return max(1.0, self.rate_per_minute / 60)

    def take(self, now: float) -> float:
        """Take a token: 0 when one was there, else the seconds until one will be (none taken)."""
        per_second = self.rate_per_minute / 60
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * per_second)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / per_second


MIN_RATE_PER_MINUTE = 1.0
UNLIMITED_CUT_FROM = 120.0
"""What a throttle cuts a site without a limit from, at least (its rate of the last minute when
higher): a site we barely sent to is slowed to one a second, not to one a minute."""
CUT = 0.5
"""A throttle halves the site's rate (not below one a minute)."""
RELEASE_STEP = 1.25
"""Each quiet interval gives back a quarter of the rate (at least one message a minute)."""
QUIET_SECONDS = 15.0
"""How long a site must not throttle before a step of its rate is given back."""
CUT_SPACING_SECONDS = 5.0
"""Throttles of one burst come back together: they cut the rate once."""
LAST_REPLIES = 5
SENT_WINDOW_SECONDS = 60


@dataclass(frozen=True)
class SiteTransition:
    """One state change of a site, for ``queue_events``."""

    change: SiteChange
    site: str
    lane: Lane
    state: SiteState
    rate_per_minute: float | None
    reply: SmtpReply | None = None


@dataclass
class Site:
    """One site as one sender and lane see it."""

    name: str
    lane: Lane
    limits: SiteLimits
    shaping: SiteState = SiteState.NORMAL
    """NORMAL, THROTTLED or RECOVERING (slowness is kept apart: a site can be both)."""
    rate_per_minute: float | None = None
    """The rate in force: the limit, or less while throttled (None: unlimited)."""
    bucket: TokenBucket | None = None
    slow_until: float = float("-inf")
    in_flight: int = 0
    seen_at: float = 0.0
    finished_at: float = float("-inf")
    """When an exchange with the site last ended (answered or abandoned)."""
    last_replies: deque[SmtpReply] = field(default_factory=lambda: deque(maxlen=LAST_REPLIES))
    transitions: list[SiteTransition] = field(default_factory=list)
    """State changes not yet written (the caller takes them)."""
    _target: float | None = None
    _changed_at: float = float("-inf")
    _sent: deque[tuple[int, int]] = field(default_factory=deque)
    """Messages sent per second of the last minute: what a site without a limit was given."""

    @classmethod
    def new(cls, name: str, lane: Lane, limits: SiteLimits, now: float) -> Site:
        rate = limits.messages_per_minute
        bucket = TokenBucket.full(rate, now) if rate is not None else None
        return cls(name, lane, limits, rate_per_minute=rate, bucket=bucket, seen_at=now)

    @property
    def state(self) -> SiteState:
        return SiteState.SLOW if self.slow_until != float("-inf") else self.shaping

    def is_slow(self, now: float) -> bool:
        """Whether the site is SLOW at ``now`` (its cooldown ending is a recovery)."""
        if self.slow_until == float("-inf"):
            return False
        if now < self.slow_until:
            return True
        self.slow_until = float("-inf")
        self._note(SiteChange.RECOVERED, None)
        return False

    def admit(self, now: float) -> float:
        """Take room for one message: 0 when it may go now, else the seconds until the rate
        allows it (nothing is taken then)."""
        self.seen_at = now
        self.release(now)
        if self.bucket is None:
            return 0.0
        return self.bucket.take(now)

    def started(self, now: float) -> None:
        """A message went to the site (its connection slot is taken)."""
        self.in_flight += 1
        second = int(now)
        if self._sent and self._sent[-1][0] == second:
            self._sent[-1] = (second, self._sent[-1][1] + 1)
        else:
            self._sent.append((second, 1))
        while self._sent and self._sent[0][0] <= second - SENT_WINDOW_SECONDS:
            self._sent.popleft()

    def finished(self, reply: SmtpReply | None, now: float) -> None:
        """A message's exchange ended with ``reply`` (None: abandoned before any)."""
        self.in_flight -= 1
        self.seen_at = self.finished_at = now
        if reply is None:
            return
        self.last_replies.append(reply)
        if is_throttle(reply):
            self.throttled(reply, now)

    def sent_last_minute(self) -> int:
        return sum(count for _, count in self._sent)

    def throttled(self, reply: SmtpReply, now: float) -> None:
        """The site throttled us: halve its rate (once per burst of throttles)."""
        if self.shaping is SiteState.THROTTLED and now - self._changed_at < CUT_SPACING_SECONDS:
            self._changed_at = now  # still throttling: the quiet interval starts again
            return
        current = self.rate_per_minute
        if current is None:
            current = max(float(self.sent_last_minute()), UNLIMITED_CUT_FROM)
            self._target = current
        else:
            self._target = self.limits.messages_per_minute or self._target or current
        self._set_rate(max(MIN_RATE_PER_MINUTE, current * CUT), now, tokens=0.0)
        self.shaping = SiteState.THROTTLED
        self._changed_at = now
        self._note(SiteChange.THROTTLED, reply)

    def release(self, now: float) -> None:
        """Give back a step of the rate for each quiet interval since the last change."""
        while self.shaping is not SiteState.NORMAL and now - self._changed_at >= QUIET_SECONDS:
            self._changed_at += QUIET_SECONDS
            assert self.rate_per_minute is not None and self._target is not None
            stepped = max(self.rate_per_minute * RELEASE_STEP, self.rate_per_minute + 1)
            if stepped >= self._target:
                self._recover(now)
                return
            self._set_rate(stepped, now)
            if self.shaping is SiteState.THROTTLED:
                self.shaping = SiteState.RECOVERING
                self._note(SiteChange.RELEASED, None)

    def _recover(self, now: float) -> None:
        limit = self.limits.messages_per_minute
        self.rate_per_minute = limit
        self.bucket = TokenBucket.full(limit, now) if limit is not None else None
        self.shaping = SiteState.NORMAL
        self._target = None
        self._note(SiteChange.RECOVERED, None)

    def _set_rate(self, rate: float, now: float, tokens: float | None = None) -> None:
        """Change the rate in force; a cut starts from an empty bucket (send nothing more now)."""
        kept = self.bucket.tokens if self.bucket is not None else 0.0
        self.rate_per_minute = rate
        self.bucket = TokenBucket(rate, 0.0, now)
        self.bucket.tokens = min(kept if tokens is None else tokens, self.bucket.capacity)

    def mark_slow(self, now: float, cooldown_seconds: float) -> None:
        """The site held an attempt longer than the budget: SLOW for ``cooldown_seconds``."""
        self.seen_at = now
        already = self.slow_until > now
        self.slow_until = now + cooldown_seconds
        if not already:
            self._note(SiteChange.SLOW, None)

    def answered_quickly(self, now: float) -> None:
        """An exchange on ``deliver-slow`` took less than the budget: the site is fast again."""
        if self.slow_until != float("-inf"):
            self.slow_until = float("-inf")
            self._note(SiteChange.RECOVERED, None)

    def _note(self, change: SiteChange, reply: SmtpReply | None) -> None:
        self.transitions.append(
            SiteTransition(
                change, self.name, self.lane, self.state, self.rate_per_minute, reply=reply
            )
        )


class Sites:
    """Every site and lane one sender talks to, created on first sight."""

    def __init__(self, overrides: dict[str, SiteLimits] | None = None) -> None:
        self._overrides = overrides
        self._sites: dict[tuple[str, Lane], Site] = {}

    def get(self, name: str, lane: Lane, now: float) -> Site:
        site = self._sites.get((name, lane))
        if site is None:
            limits = site_limits(name, self._overrides)
            site = self._sites[(name, lane)] = Site.new(name, lane, limits, now)
        return site

    def recent(self, now: float, within_seconds: float) -> list[Site]:
        """The sites seen within ``within_seconds`` or with mail in flight (others are forgotten
        by the snapshot)."""
        return [
            site
            for site in self._sites.values()
            if site.in_flight or now - site.seen_at <= within_seconds
        ]

    def transitions(self, now: float) -> list[SiteTransition]:
        """Every state change since the last call (releases and cooldowns are applied first)."""
        changes: list[SiteTransition] = []
        for site in self._sites.values():
            site.release(now)
            site.is_slow(now)
            changes.extend(site.transitions)
            site.transitions.clear()
        return changes
