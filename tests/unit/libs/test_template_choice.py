"""Which version a recipient gets: small cohorts, sticky, only while running, never security
mail unless overridden."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from libs.template_choice import choose_version, in_cohort
from libs.templates import Experiment, LocaleContent, TemplateVersion
from schemas.common import Lane

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
RECIPIENTS = [f"user{n}@example.org" for n in range(1000)]


def version(number: int) -> TemplateVersion:
    content = LocaleContent(subject=f"v{number}", text="hello")
    return TemplateVersion(
        tenant_id="t1", alias="welcome", version=number, contents={"en": content}
    )


ACTIVE, VARIANT = version(1), version(2)


def experiment(**fields: Any) -> Experiment:
    values: dict[str, Any] = {
        "id": "5f0c2f1e-7a7b-4a57-9a9e-6d7c1d0b9a11",
        "tenant_id": "t1",
        "alias": "welcome",
        "variant_version": 2,
        "percent": 10.0,
        "starts_at": NOW - timedelta(hours=1),
        "ends_at": NOW + timedelta(days=7),
    }
    return Experiment.model_validate(values | fields)


def variant_share(running: Experiment, lane: Lane = Lane.NORMAL, now: datetime = NOW) -> int:
    """How many of the 1,000 recipients get the variant."""
    chosen = [choose_version(ACTIVE, running, VARIANT, r, lane, now)[0] for r in RECIPIENTS]
    return sum(1 for picked in chosen if picked is VARIANT)


def test_ten_percent_of_a_thousand_recipients_get_the_variant() -> None:
    # Over experiment ids the count is Binomial(1000, 0.1): standard deviation 9.5, 30 is 3.2 of
    # them (a fixed id makes the test deterministic; the tolerance says any fair hash passes).
    assert 70 <= variant_share(experiment()) <= 130


def test_the_share_follows_the_percent_on_average_over_experiments() -> None:
    # 20 experiments of 1,000 recipients at 10 %: the total varies by about 42 (0.2 points).
    ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(20)]
    total = sum(variant_share(experiment(id=i)) for i in ids)
    assert abs(total / 20_000 - 0.10) < 0.02


def test_a_recipient_always_gets_the_same_version_whatever_the_case() -> None:
    running = experiment()
    later = NOW + timedelta(hours=2)
    first = [choose_version(ACTIVE, running, VARIANT, r, Lane.NORMAL, NOW) for r in RECIPIENTS]
    again = [
        choose_version(ACTIVE, running, VARIANT, r.upper(), Lane.NORMAL, later) for r in RECIPIENTS
    ]
    assert first == again
    picked = {(chosen.version, experiment_id) for chosen, experiment_id in first}
    assert picked == {(1, None), (2, running.id)}


def test_experiments_draw_independent_cohorts() -> None:
    one, other = experiment(), experiment(id="9b1d9a53-0f6e-4f2f-8d55-3c2b6f1e0a77")
    first = {r for r in RECIPIENTS if in_cohort(one.id, r, 50)}
    second = {r for r in RECIPIENTS if in_cohort(other.id, r, 50)}
    assert 150 < len(first & second) < 350  # independent halves overlap in about a quarter


def test_an_experiment_applies_only_within_its_window_and_until_stopped() -> None:
    running = experiment()
    assert variant_share(running, now=running.starts_at - timedelta(seconds=1)) == 0
    assert variant_share(running, now=running.starts_at) > 0
    assert variant_share(running, now=running.ends_at) == 0
    assert variant_share(experiment(stopped_at=NOW - timedelta(minutes=1))) == 0


def test_critical_lane_mail_keeps_the_active_version_unless_overridden() -> None:
    assert variant_share(experiment(), lane=Lane.CRITICAL) == 0
    overridden = experiment(override_critical=True)
    assert variant_share(overridden, lane=Lane.CRITICAL) == variant_share(overridden)


def test_without_an_experiment_or_its_variant_everyone_gets_the_active_version() -> None:
    assert choose_version(ACTIVE, None, None, RECIPIENTS[0], Lane.NORMAL, NOW) == (ACTIVE, None)
    assert all(
        choose_version(ACTIVE, experiment(percent=50), None, r, Lane.NORMAL, NOW)[0] is ACTIVE
        for r in RECIPIENTS
    )


def test_the_cohort_grows_with_the_percent_and_keeps_its_members() -> None:
    small = {r for r in RECIPIENTS if in_cohort("e", r, 5)}
    large = {r for r in RECIPIENTS if in_cohort("e", r, 20)}
    assert small < large
