"""Alert decisions: open at the threshold with enough sample, escalate, resolve with hysteresis."""

from __future__ import annotations

import pytest

from libs.alerts import AlertKind
from libs.settings import Settings
from schemas.notices import AlertSeverity
from services.analytics.alerts import Change, Decision, Measure, Threshold, decide, thresholds

BOUNCES = Threshold(warning=0.02, critical=0.05, minimum_sample=100, window_seconds=3600)
RESOLVE_RATIO = 0.8
WARNING, CRITICAL = AlertSeverity.WARNING, AlertSeverity.CRITICAL


def bounce_rate(value: float, sample: int = 1000) -> Measure:
    return Measure("tenant", AlertKind.BOUNCE_RATE, None, value, sample)


def decided(value: float, open_now: AlertSeverity | None, sample: int = 1000) -> Decision:
    return decide(bounce_rate(value, sample), open_now, BOUNCES, RESOLVE_RATIO)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0199, Decision(Change.KEEP)),
        (0.02, Decision(Change.OPEN, WARNING)),
        (0.049, Decision(Change.OPEN, WARNING)),
        (0.05, Decision(Change.OPEN, CRITICAL)),
        (1.0, Decision(Change.OPEN, CRITICAL)),
    ],
)
def test_an_alert_opens_at_its_threshold_with_the_severity_reached(
    value: float, expected: Decision
) -> None:
    assert decided(value, None) == expected


def test_too_small_a_sample_neither_opens_nor_resolves() -> None:
    assert decided(1.0, None, sample=99) == Decision(Change.KEEP)
    assert decided(1.0, None, sample=100) == Decision(Change.OPEN, CRITICAL)
    assert decided(0.0, WARNING, sample=99) == Decision(Change.KEEP)


def test_an_open_alert_resolves_only_below_its_share_of_the_warning_threshold() -> None:
    assert decided(0.019, WARNING) == Decision(Change.KEEP)
    assert decided(0.0161, WARNING) == Decision(Change.KEEP)
    assert decided(0.0159, WARNING) == Decision(Change.RESOLVE)
    assert decided(0.0, CRITICAL) == Decision(Change.RESOLVE)


def test_an_open_alert_does_not_open_again() -> None:
    assert decided(0.03, WARNING) == Decision(Change.KEEP)
    assert decided(0.9, CRITICAL) == Decision(Change.KEEP)


def test_a_warning_escalates_to_critical_and_never_back_while_open() -> None:
    assert decided(0.06, WARNING) == Decision(Change.ESCALATE, CRITICAL)
    assert decided(0.03, CRITICAL) == Decision(Change.KEEP)


def test_the_default_thresholds_are_the_mailbox_providers() -> None:
    limits = thresholds(Settings())

    complaints = limits[AlertKind.COMPLAINT_RATE]
    assert (complaints.warning, complaints.critical) == (0.001, 0.003)
    assert complaints.window_seconds == 24 * 3600
    assert limits[AlertKind.BOUNCE_RATE].severity(0.05) is CRITICAL
    assert limits[AlertKind.CRITICAL_LATENCY].severity(9_999) is None
    assert set(limits) == set(AlertKind)
