"""Storm mode through `boxwatch replay` (real handlers, template rules and schedule, moto): a
district blackout is one `area_outage` per client and one `area_all_clear`, and never hides a
third alarm (docs/claims.md "Storm mode")."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from boxwatch_infra.replay import Replay, Scenario

SCENARIOS = Path(__file__).parents[1] / "scenarios"
TOLD = ["both", "c-E0", "c-E1", "c-E2", "c-G00", "c-G04", "c-G40", "c-G44"]  # online neighbours' clients at 120 s


def notes(report: dict[str, Any], **match: Any) -> list[dict[str, Any]]:
    return [n for n in report["notifications"] if all(n.get(k) == v for k, v in match.items())]


@pytest.fixture(scope="module")
def storm() -> dict[str, Any]:
    return Replay(Scenario.load(SCENARIOS / "network_storm.yaml")).run()


def test_a_blackout_is_one_area_outage_per_client(storm: dict[str, Any]) -> None:
    # Given 21 of 28 boxes around a centre drop within 20 s (storm share 0.5, at least 8)
    # When the first sweep after them runs (120 s) and the cluster grows by one more at 130 s
    pushes = notes(storm, kind="area_outage")
    # Then each client of an online neighbour hears once, at the first sweep, that power is out
    assert sorted(n["client"] for n in pushes) == TOLD
    assert {n["t"] for n in pushes} == {120.0}
    assert {(n["offline_count"], n["boxes_in_area"]) for n in pushes} == {(21, 28)}
    assert next(n["box"] for n in pushes if n["client"] == "both") == "E1"
    # and nobody gets the per-cluster fourth alarm, not even when the cluster grew
    assert not notes(storm, kind="neighbour_outage")
    (incident,) = storm["network"]["incidents"]
    assert incident["storm"] is True and incident["storm_at"] == 120.0 and len(incident["members"]) == 22


def test_storm_mode_keeps_every_third_alarm(storm: dict[str, Any]) -> None:
    # Given G22 alarmed at 0 s and dropped in the blackout, G44 alarmed at 60 s and dropped at 130 s
    third = Counter((n["client"], n["box"]) for n in notes(storm, kind="offline_after_alarm"))
    # Then their clients are told the box went offline after its alarm, once each
    assert third == {("c-G22", "G22"): 1, ("both", "G22"): 1, ("c-G44", "G44"): 1}


def test_the_area_all_clear_follows_the_last_box_back(storm: dict[str, Any]) -> None:
    # Given every dropped box reconnects, the last at 442 s
    clear = notes(storm, kind="area_all_clear")
    # Then the sweep after it (480 s) tells each client told of the outage, once, that power is back
    assert sorted(n["client"] for n in clear) == TOLD
    assert {(n["t"], n["back_at"]) for n in clear} == {(480.0, 442.0)}
    (incident,) = storm["network"]["incidents"]
    assert incident["state"] == "resolved" and incident["resolved_at"] == 442.0
    # and the client far away heard nothing
    assert not notes(storm, client="far")
