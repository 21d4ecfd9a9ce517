"""Which lanes a process serves (``SENDARIX_LANES``), and the pipeline's processes when the
stage services are split into urgent and patient processes."""

from __future__ import annotations

import pydantic
import pytest

from deploy.stack.pipeline import (
    LANE_SPLIT_SERVICES,
    SERVICES,
    pipeline_processes,
    urgent_name,
)
from libs.settings import Settings
from schemas.common import Lane


def test_every_lane_is_served_unless_told_otherwise() -> None:
    assert Settings().served_lanes == (Lane.CRITICAL, Lane.HIGH, Lane.NORMAL, Lane.BULK)


def test_the_lanes_named_are_served_in_order_of_urgency() -> None:
    assert Settings(lanes=" bulk, critical").served_lanes == (Lane.CRITICAL, Lane.BULK)


@pytest.mark.parametrize("lanes", ["", " , ", "critical,urgent"])
def test_no_lane_or_an_unknown_one_is_refused(lanes: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        Settings(lanes=lanes)


def test_the_lanes_reach_a_child_process_through_its_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in Settings(lanes="high,critical").as_env().items():
        monkeypatch.setenv(name, value)
    assert Settings().served_lanes == (Lane.CRITICAL, Lane.HIGH)


def test_one_process_per_service_serves_every_lane_by_default() -> None:
    processes = pipeline_processes(Settings(), 9400)
    assert [name for name, _, _ in processes][1:] == list(SERVICES)
    assert {own.lanes for _, _, own in processes} == {"critical,high,normal,bulk"}


def test_split_stage_services_run_their_urgent_lanes_in_a_process_of_their_own() -> None:
    split = pipeline_processes(Settings(), 9400, lane_split=True)
    processes = {name: (argv, own) for name, argv, own in split}
    for service in LANE_SPLIT_SERVICES:
        urgent_argv, urgent = processes[urgent_name(service)]
        patient_argv, patient = processes[service]
        assert urgent.served_lanes == (Lane.CRITICAL, Lane.HIGH)
        assert patient.served_lanes == (Lane.NORMAL, Lane.BULK)
        assert patient_argv == urgent_argv
        assert urgent.metrics_port == 0 and patient.metrics_port > 0
    unsplit = set(SERVICES) - set(LANE_SPLIT_SERVICES)
    assert {urgent_name(s) for s in unsplit}.isdisjoint(processes)
    assert all(processes[s][1].lanes == "critical,high,normal,bulk" for s in unsplit)
