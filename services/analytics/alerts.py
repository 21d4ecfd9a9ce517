"""Deliverability alert decisions: from a measured value and the alert open now, what changes.

Pure functions over plain values, so the rules are tested without a database:
- an alert **opens** when the value reaches the warning threshold over at least the minimum
  sample (critical straight away if it reaches the critical one);
- an open warning **escalates** to critical on the same alert (no second ``opened`` notice: the
  alert, the API and the gauge show the new severity; a severity never goes back down while
  the alert is open);
- an open alert **resolves** once the value, over at least the minimum sample, falls below
  ``resolve_ratio`` of the warning threshold (hysteresis). Too small a sample neither opens nor
  resolves anything: a quiet hour says nothing about the bounce rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from libs.alerts import AlertKind
from libs.settings import Settings
from schemas.notices import AlertSeverity


@dataclass(frozen=True)
class Threshold:
    warning: float
    critical: float
    minimum_sample: int
    window_seconds: int

    def severity(self, value: float) -> AlertSeverity | None:
        """The severity ``value`` reaches (None: below the warning threshold)."""
        if value >= self.critical:
            return AlertSeverity.CRITICAL
        if value >= self.warning:
            return AlertSeverity.WARNING
        return None

    def of(self, severity: AlertSeverity) -> float:
        """The threshold of ``severity``."""
        return self.critical if severity is AlertSeverity.CRITICAL else self.warning


def thresholds(settings: Settings) -> dict[AlertKind, Threshold]:
    """Each kind of alert's thresholds, from the settings (``libs.settings`` says why each)."""
    s = settings
    return {
        AlertKind.BOUNCE_RATE: Threshold(
            s.alert_bounce_warning,
            s.alert_bounce_critical,
            s.alert_bounce_min_sample,
            s.alert_bounce_window_seconds,
        ),
        AlertKind.COMPLAINT_RATE: Threshold(
            s.alert_complaint_warning,
            s.alert_complaint_critical,
            s.alert_complaint_min_sample,
            s.alert_complaint_window_seconds,
        ),
        AlertKind.DOMAIN_DEFERRALS: Threshold(
            s.alert_domain_warning,
            s.alert_domain_critical,
            s.alert_domain_min_sample,
            s.alert_domain_window_seconds,
        ),
        AlertKind.CRITICAL_LATENCY: Threshold(
            s.alert_latency_warning_ms,
            s.alert_latency_critical_ms,
            s.alert_latency_min_sample,
            s.alert_latency_window_seconds,
        ),
    }


@dataclass(frozen=True)
class Measure:
    """A value of one kind for one tenant (and key) over its window."""

    tenant_id: str
    kind: AlertKind
    key: str | None
    value: float
    sample: int


class Change(StrEnum):
    OPEN = "open"
    ESCALATE = "escalate"
    RESOLVE = "resolve"
    KEEP = "keep"
    """Nothing opens or resolves (an open alert's last value is brought up to date)."""


@dataclass(frozen=True)
class Decision:
    change: Change
    severity: AlertSeverity | None = None
    """The severity opened or escalated to."""


NOTHING = Decision(Change.KEEP)


def decide(
    measure: Measure,
    open_severity: AlertSeverity | None,
    threshold: Threshold,
    resolve_ratio: float,
) -> Decision:
    """What ``measure`` does to the alert of its kind and key, open with ``open_severity`` (None:
    no alert is open)."""
    if measure.sample < threshold.minimum_sample:
        return NOTHING
    reached = threshold.severity(measure.value)
    if open_severity is None:
        return Decision(Change.OPEN, reached) if reached is not None else NOTHING
    if measure.value < resolve_ratio * threshold.warning:
        return Decision(Change.RESOLVE)
    if reached is AlertSeverity.CRITICAL and open_severity is AlertSeverity.WARNING:
        return Decision(Change.ESCALATE, reached)
    return NOTHING
