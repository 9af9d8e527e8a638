"""The fourth alarm's fan-out through `boxwatch replay` (real handlers, the template's SQS event
source run by the sandbox): a cluster crossing two area parts is decided once by OfflineSweep and
told part by part by OutageNotify, each client once (docs/network-status.md "Fan-out")."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import h3
import pytest

from boxwatch_infra.replay import Replay, Scenario

SCENARIOS = Path(__file__).parents[1] / "scenarios"
MEMBERS = ["E1", "E2", "W1", "W2"]


@pytest.fixture(scope="module")
def fan_out() -> dict[str, Any]:
    return Replay(Scenario.load(SCENARIOS / "network_fan_out.yaml")).run()


def part_of(lat: float, lng: float) -> str:
    return str(h3.cell_to_parent(h3.latlng_to_cell(lat, lng, 7), 6))


def test_the_scenario_crosses_two_parts() -> None:
    # Given the scenario's boxes: members on both sides of a res-6 border, recipients on both
    scenario = Scenario.load(SCENARIOS / "network_fan_out.yaml")
    parts = {b["id"]: part_of(b["lat"], b["lng"]) for b in scenario.boxes}
    assert len({parts[b] for b in MEMBERS}) == 2
    assert parts["NA"] != parts["NB"]


def test_the_workers_tell_each_client_once_about_the_whole_cluster(fan_out: dict[str, Any]) -> None:
    # When the first sweep after the drops (120 s) runs and its parts are told by OutageNotify
    pushes = [n for n in fan_out["notifications"] if n["kind"] == "neighbour_outage"]
    # Then each client of an online neighbour hears once, with every member, whichever part it is in
    assert Counter(n["client"] for n in pushes) == {"c-NA": 1, "c-NB": 1, "c-MID": 1, "two": 1}
    assert {n["t"] for n in pushes} == {120.0}
    assert all(sorted(n["offline_boxes"]) == MEMBERS for n in pushes)
    # the client with a box in each part hears about one of them
    assert next(n["box"] for n in pushes if n["client"] == "two") in ("NA", "NB")
    # and the warnings were sent by the workers: the sweep sent only the all-clears (below)
    calls = fan_out["aws_calls_by_function"]
    assert calls["OutageNotifyFunction"]["sns"] == 4
    clears = [n for n in fan_out["notifications"] if n["kind"] == "all_clear"]
    assert calls["OfflineSweepFunction"]["sns"] == len(clears)
    assert calls["OfflineSweepFunction"]["sqs"] >= 1
    # nobody else: not the member's client, not the far box's
    assert not [n for n in fan_out["notifications"] if n["client"] in ("c-W1", "far")]


def test_one_incident_and_its_all_clear(fan_out: dict[str, Any]) -> None:
    (incident,) = fan_out["network"]["incidents"]
    assert incident["members"] == MEMBERS and incident["state"] == "resolved" and incident["resolved_at"] == 306.0
    clear = Counter(n["client"] for n in fan_out["notifications"] if n["kind"] == "all_clear")
    assert clear == {"c-NA": 1, "c-NB": 1, "c-MID": 1, "two": 1}
