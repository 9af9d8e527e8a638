"""Issue 4 acceptance: remote power-off through `boxwatch replay` (real handlers, moto shadows)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from boxwatch_infra.replay import Replay, Scenario

SCENARIOS = Path(__file__).parents[1] / "scenarios"


def run(name: str) -> dict[str, Any]:
    return Replay(Scenario.load(SCENARIOS / name)).run()


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return run("power_off.yaml")


def command(report: dict[str, Any], client: str, t: float) -> dict[str, Any]:
    return next(c for c in report["commands"] if c["client"] == client and c["t"] == t)


def test_bound_clients_power_off_reaches_the_shadow_and_is_settled_by_the_box(report: dict[str, Any]) -> None:
    # Given alice bound to BX-1 / When she powers it off and the box reports its contactor open
    first = command(report, "alice", 30.0)
    assert first["http_status"] == 201 and first["status"] == "succeeded"
    # Then the box's report is in its shadow and the order is gone from desired
    shadow = report["shadows"]["BX-1"]
    assert shadow["state"]["reported"]["contactor"] == "open"
    assert shadow["state"]["reported"]["command_id"] == first["command_id"]
    assert "desired" not in shadow["state"]
    # and alice (only alice) hears the outcome when the box confirmed
    results = [n for n in report["notifications"] if n["kind"] == "power_off_result" and n["box"] == "BX-1"]
    assert [(n["client"], n["status"], n["t"]) for n in results] == [("alice", "succeeded", 35.0)]


def test_same_idempotency_key_gives_one_command(report: dict[str, Any]) -> None:
    first, again = command(report, "alice", 30.0), command(report, "alice", 31.0)
    assert again["http_status"] == 200 and again["command_id"] == first["command_id"]
    # one order was written (shadow versions: desired, reported, desired cleared)
    assert report["shadows"]["BX-1"]["version"] == 3


def test_unbound_client_is_refused_and_nothing_is_written(report: dict[str, Any]) -> None:
    refused = command(report, "mallory", 40.0)
    # answered as for an unknown box: an unbound client cannot tell box ids apart
    assert refused["http_status"] == 404 and refused["status"] == "refused" and refused["command_id"] is None
    assert "BX-3" not in report["shadows"]  # mallory's own box untouched too
    assert any(r["error"] == "not_found" and r["client"] == "mallory" for r in report["rejected"])


def test_unconfirmed_command_expires_and_leaves_no_desired_power_off(report: dict[str, Any]) -> None:
    expired = command(report, "bob", 50.0)
    assert expired["status"] == "expired"
    assert "desired" not in report["shadows"]["BX-2"]["state"]
    [note] = [n for n in report["notifications"] if n["client"] == "bob"]
    assert note["kind"] == "power_off_result" and note["status"] == "expired"
    assert 170.0 <= note["t"] <= 230.0  # at the first expiry sweep after 50 + 120 s


def test_box_that_cannot_open_its_contactor_fails_the_command(report: dict[str, Any]) -> None:
    failed = command(report, "carol", 60.0)
    assert failed["http_status"] == 201 and failed["status"] == "failed"
    assert "desired" not in report["shadows"]["BX-4"]["state"]
    assert report["shadows"]["BX-4"]["state"]["reported"]["contactor"] == "closed"
    [note] = [n for n in report["notifications"] if n["client"] == "carol"]
    assert (note["kind"], note["status"], note["t"]) == ("power_off_result", "failed", 64.0)


def test_neighbour_warned_by_fourth_alarm_powers_off_its_own_box() -> None:
    report = run("power_off_after_outage.yaml")
    # Given ann was warned of the offline cluster around her shop
    warned = [n for n in report["notifications"] if n["client"] == "ann" and n["kind"] == "neighbour_outage"]
    assert warned and warned[0]["box"] == "N1" and set(warned[0]["offline_boxes"]) == {"O1", "O2", "O3"}
    assert warned[0]["t"] < 90
    # When she powers off N1 / Then the command succeeds and her shop's contactor is open
    assert command(report, "ann", 90.0)["status"] == "succeeded"
    assert report["shadows"]["N1"]["state"]["reported"]["contactor"] == "open"
    # and fox, bound only to a tower, cannot cut the shop's power
    assert command(report, "fox", 95.0)["http_status"] == 404
