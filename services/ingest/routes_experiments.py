"""``/v1/templates/{alias}/experiments``: a template's traffic split between its active version
and a variant, for a small cohort (at most 50 %) and a while (at most 90 days).

Refused (422 ``experiment_not_allowed``) on a template whose category travels in the critical
lane (OTP, password reset, login verification, security alerts) unless ``override_critical``:
security flows stay stable. One experiment at a time per template (409 ``experiment_running``).
Reading an experiment gives its outcomes per version, from the analytics aggregates.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from libs import template_experiments
from libs.template_experiments import ExperimentFields, ExperimentReport
from libs.templates import Experiment
from services.ingest.http_deps import AdminCaller, IngestDep, ReadCaller, parsed_body, problems
from services.ingest.routes_keys import json_body_doc
from services.ingest.routes_templates import PathAlias, found

router = APIRouter(prefix="/v1/templates/{alias}/experiments", tags=["templates"])


class ExperimentList(BaseModel):
    """A template's experiments, latest start first."""

    experiments: list[Experiment]


@router.get(
    "", response_model=ExperimentList, responses=problems(401, 403, 404), summary="Experiments"
)
async def list_experiments(
    alias: PathAlias, ingest: IngestDep, caller: ReadCaller
) -> ExperimentList:
    listed = template_experiments.list_experiments(ingest.pool, caller.tenant.id, alias)
    return ExperimentList(experiments=await found(f"template {alias!r}", listed))


@router.post(
    "",
    status_code=201,
    response_model=Experiment,
    responses=problems(400, 401, 403, 404, 409, 415, 422),
    summary="Start an experiment",
    openapi_extra=json_body_doc(ExperimentFields),
)
async def start_experiment(
    alias: PathAlias, request: Request, ingest: IngestDep, caller: AdminCaller
) -> Experiment:
    """``percent`` of the recipients (the same ones throughout) get ``variant_version`` from
    ``starts_at`` (default now) until ``ends_at``; the others the active version."""
    body = await parsed_body(request, ExperimentFields)
    started = template_experiments.start_experiment(
        ingest.pool, caller.tenant.id, alias, body, caller.key.id
    )
    experiment = await found(f"template {alias!r}", started)
    ingest.templates.discard(caller.tenant.id, alias)
    return experiment


@router.get(
    "/{experiment_id}",
    response_model=ExperimentReport,
    responses=problems(401, 403, 404),
    summary="An experiment and its outcomes per version",
)
async def get_experiment(
    alias: PathAlias, experiment_id: str, ingest: IngestDep, caller: ReadCaller
) -> ExperimentReport:
    """Counts (accepted, delivered, bounced, complained, deferred, failed) and accept->delivered
    p50/p99 of the control (the version active when it started) and the variant over the
    experiment's window."""
    report = template_experiments.experiment_report(
        ingest.pool, caller.tenant.id, alias, experiment_id
    )
    return await found(f"experiment {experiment_id!r} of template {alias!r}", report)


@router.post(
    "/{experiment_id}/stop",
    response_model=Experiment,
    responses=problems(401, 403, 404),
    summary="Stop an experiment (everyone gets the active version again)",
)
async def stop_experiment(
    alias: PathAlias, experiment_id: str, ingest: IngestDep, caller: AdminCaller
) -> Experiment:
    stopped = template_experiments.stop_experiment(
        ingest.pool, caller.tenant.id, alias, experiment_id
    )
    experiment = await found(f"experiment {experiment_id!r} of template {alias!r}", stopped)
    ingest.templates.discard(caller.tenant.id, alias)
    return experiment
