"""Which version of a template each recipient gets: the active one, or an experiment's variant.

An experiment sends ``percent`` of recipients its variant while it runs. The cohort is a stable
hash of the experiment and the lower-cased address, so a recipient always gets the same version
of one experiment (retries, repeated sends, every ingest process alike) and two experiments
draw independent cohorts. Mail in the critical lane (one-time codes, password resets, security
alerts) keeps the active version unless the tenant overrode that for the experiment: security
flows stay stable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from libs.templates import Experiment, Template, TemplateCatalogue, TemplateVersion
from schemas.common import Lane

_BUCKETS = 10_000
"""Cohort resolution: a percent is honoured to two decimals, as the table stores it."""


@dataclass(frozen=True)
class TemplateChoices:
    """What a template offers a request: its head, the active version, and the experiment
    open on it with its variant version (None: none, or not loadable)."""

    template: Template
    active: TemplateVersion | None
    experiment: Experiment | None
    variant: TemplateVersion | None
    pinned: int | None = None
    """The version the request asked for (``active`` is then that version, when it exists)."""


async def template_choices(
    catalogue: TemplateCatalogue, tenant_id: str, alias: str, pinned: int | None = None
) -> TemplateChoices | None:
    """The choices ``alias`` offers (None: no such template). A request that pins a version
    gets exactly it, and no experiment (an archived template offers nothing either way)."""
    template = await catalogue.template(tenant_id, alias)
    if template is None:
        return None
    if pinned is not None:
        version = (
            await catalogue.version(tenant_id, alias, pinned)
            if template.archived_at is None
            else None
        )
        return TemplateChoices(template, version, None, None, pinned)
    experiment = await catalogue.experiment(tenant_id, alias)
    variant = (
        await catalogue.version(tenant_id, alias, experiment.variant_version)
        if experiment is not None
        else None
    )
    return TemplateChoices(template, await catalogue.active(tenant_id, alias), experiment, variant)


def in_cohort(experiment_id: str, address: str, percent: float) -> bool:
    """Whether ``address`` is among the ``percent`` of recipients an experiment diverts."""
    digest = hashlib.sha256(f"{experiment_id}\0{address.lower()}".encode()).digest()
    return int.from_bytes(digest[:8]) % _BUCKETS < round(percent * _BUCKETS / 100)


def choose_version(
    active: TemplateVersion,
    experiment: Experiment | None,
    variant: TemplateVersion | None,
    recipient: str,
    lane: Lane,
    now: datetime,
) -> tuple[TemplateVersion, str | None]:
    """The version ``recipient`` gets, and the experiment that chose it (None: the active
    version, no experiment involved).

    ``lane`` is the lane the message's category earns (``natural_lane``): a security message
    slowed to a lower lane is still one.
    """
    if (
        experiment is None
        or variant is None
        or not experiment.running(now)
        or (lane is Lane.CRITICAL and not experiment.override_critical)
        or not in_cohort(experiment.id, recipient, experiment.percent)
    ):
        return active, None
    return variant, experiment.id
