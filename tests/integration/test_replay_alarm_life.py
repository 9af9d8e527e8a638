"""The alarm's life through `boxwatch replay` (real handlers, moto): clear, ack, escalation in event
time, repeats joining one alarm (docs/alarm-life.md). Scenarios in tests/scenarios/life_*.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from boxwatch_infra.replay import Replay, Scenario

SCENARIOS = Path(__file__).parents[1] / "scenarios"


def run(name: str) -> dict[str, Any]:
    return Replay(Scenario.load(SCENARIOS / name)).run()


def who(report: dict[str, Any], **match: Any) -> list[tuple[float, str]]:
    return sorted((n["t"], n["client"]) for n in report["notifications"]
                  if all(n.get(k) == v for k, v in match.items()))


def alarm(report: dict[str, Any], box: str, cause: str, circuit: str | None = None) -> list[dict[str, Any]]:
    return [a for a in report["alarms"] if (a["box"], a["cause"], a["circuit"]) == (box, cause, circuit)]


# ------------------------------------------------------------------ clear and ack
@pytest.fixture(scope="module")
def clear_and_ack() -> dict[str, Any]:
    return run("life_clear_and_ack.yaml")


def test_a_clear_tells_every_client_and_clears_the_alarm(clear_and_ack: dict[str, Any]) -> None:
    # Given BX-1's overtemp alarm at 0 s / When the box's clear message arrives at 120 s
    # Then both clients get alarm_cleared once, then, and the alarm is cleared with its time
    assert who(clear_and_ack, kind="alarm_cleared") == [(120.0, "alice"), (120.0, "bob")]
    [a] = alarm(clear_and_ack, "BX-1", "overtemp")
    assert (a["state"], a["cleared_at"], a["escalation_steps"]) == ("cleared", 120.0, [])


def test_a_cleared_alarm_may_still_be_acknowledged(clear_and_ack: dict[str, Any]) -> None:
    # Given BX-1's alarm cleared at 120 s / When bob acknowledges it as a test at 130 s
    # Then it keeps its disposition and alice is told
    [a] = alarm(clear_and_ack, "BX-1", "overtemp")
    assert (a["acked_by"], a["acked_at"], a["disposition"]) == ("bob", 130.0, "test")
    assert who(clear_and_ack, kind="acknowledged", box="BX-1") == [(130.0, "alice")]


def test_an_ack_tells_the_other_clients_once_and_stops_the_reminder(clear_and_ack: dict[str, Any]) -> None:
    # Given BX-2's alarm at 10 s, acknowledged by alice at 70 s, then by bob at 80 s
    # Then only bob hears (alice acknowledged), once: bob's ack is a repeat that changes nothing
    assert who(clear_and_ack, kind="acknowledged", box="BX-2") == [(70.0, "bob")]
    [a] = alarm(clear_and_ack, "BX-2", "residual_current")
    assert (a["state"], a["acked_by"], a["acked_at"], a["disposition"]) == ("active", "alice", 70.0, "false_alarm")
    # and no reminder follows for either alarm (the settle period runs past 310 s)
    assert who(clear_and_ack, kind="reminder") == []
    assert clear_and_ack["rejected"] == []


# ------------------------------------------------------------------ escalation
@pytest.fixture(scope="module")
def escalation() -> dict[str, Any]:
    return run("life_escalation.yaml")


def test_unacknowledged_alarm_reminds_at_300_s_and_texts_the_manager_at_600_s(escalation: dict[str, Any]) -> None:
    # Given BX-1's alarm at 0 s that nobody acknowledges
    # Then every client gets a reminder at 300 s and the manager an SMS at 600 s, each once
    assert who(escalation, kind="reminder", box="BX-1") == [(300.0, "alice"), (300.0, "zhang")]
    assert who(escalation, kind="escalation", box="BX-1") == [(600.0, "zhang")]
    [sms] = [n for n in escalation["notifications"] if n["kind"] == "escalation"]
    assert (sms["channel"], sms["cause"]) == ("sms", "overtemp")
    assert alarm(escalation, "BX-1", "overtemp")[0]["escalation_steps"] == ["reminder", "escalation"]


def test_an_ack_at_450_s_stops_the_chain_after_the_reminder(escalation: dict[str, Any]) -> None:
    # Given BX-2's alarm at 0 s, acknowledged by zhang at 450 s / Then the reminder at 300 s, no SMS
    assert who(escalation, kind="reminder", box="BX-2") == [(300.0, "alice"), (300.0, "zhang")]
    assert who(escalation, kind="escalation", box="BX-2") == []
    assert who(escalation, kind="acknowledged", box="BX-2") == [(450.0, "alice")]
    assert alarm(escalation, "BX-2", "overcurrent")[0]["escalation_steps"] == ["reminder"]


def test_a_cleared_alarm_stops_its_chain(escalation: dict[str, Any]) -> None:
    # Given BX-3's alarm at 0 s cleared by the box at 200 s / Then no step at all
    assert who(escalation, box="BX-3", kind="reminder") == who(escalation, box="BX-3", kind="escalation") == []
    [a] = alarm(escalation, "BX-3", "arc_fault")
    assert (a["state"], a["escalation_steps"]) == ("cleared", [])


# ------------------------------------------------------------------ repeats
@pytest.fixture(scope="module")
def repeats() -> dict[str, Any]:
    return run("life_repeats_join.yaml")


def test_two_concurrent_alarms_of_one_cause_make_one_alarm_with_count_2(repeats: dict[str, Any]) -> None:
    # Given two overcurrent alarms of BX-1's main circuit at the same instant
    # Then one alarm, count 2, still active, and one reminder for it (not two)
    [main] = alarm(repeats, "BX-1", "overcurrent", "main")
    assert (main["state"], main["count"]) == ("active", 2)
    assert [n["count"] for n in repeats["notifications"] if n["kind"] == "reminder" and n["circuit"] == "main"] == [2]


def test_a_clear_is_per_circuit_and_the_next_alarm_opens_a_new_one(repeats: dict[str, Any]) -> None:
    # Given branch-2 alarmed at 30 s, cleared at 60 s (delivered twice), alarmed again at 90 s
    # Then two branch-2 alarms, the first cleared, told once; main is untouched
    branch = alarm(repeats, "BX-1", "overcurrent", "branch-2")
    assert [(a["state"], a["first_at"], a["cleared_at"]) for a in branch] == [("cleared", 30.0, 60.0),
                                                                             ("active", 90.0, None)]
    assert who(repeats, kind="alarm_cleared") == [(60.0, "alice")]


# ------------------------------------------------------------------ a fourth alarm's life
@pytest.fixture(scope="module")
def outage() -> dict[str, Any]:
    return run("life_outage_escalation.yaml")


def test_a_fourth_alarm_nobody_acknowledges_reminds_and_texts_the_manager(outage: dict[str, Any]) -> None:
    # Then N1's clients are warned at the 60 s sweep, reminded at 360 s, its manager texted at 660 s
    assert who(outage, kind="neighbour_outage", box="N1") == [(60.0, "mo"), (60.0, "nina")]
    assert who(outage, kind="reminder", box="N1") == [(360.0, "mo"), (360.0, "nina")]
    assert who(outage, kind="escalation") == [(660.0, "mo")]
    [n1] = alarm(outage, "N1", "neighbour_outage")
    assert n1["escalation_steps"] == ["reminder", "escalation"] and n1["acked_by"] is None


def test_an_acknowledged_fourth_alarm_stops_and_the_incidents_end_clears_both(outage: dict[str, Any]) -> None:
    # Then kai, who acknowledged N2's at 200 s, hears nothing more until the all-clear
    assert [k for t, k in sorted((n["t"], n["kind"]) for n in outage["notifications"] if n["client"] == "kai")] == [
        "neighbour_outage", "all_clear"]
    [n1], [n2] = alarm(outage, "N1", "neighbour_outage"), alarm(outage, "N2", "neighbour_outage")
    assert n2["acked_by"] == "kai" and n2["escalation_steps"] == []
    # and when both members are back (700 s) the incident's all-clear reaches every client warned,
    # and both fourth alarms are cleared then, without an alarm_cleared push
    assert who(outage, kind="all_clear") == [(720.0, "kai"), (720.0, "mo"), (720.0, "nina")]
    assert n1["state"] == n2["state"] == "cleared" and n1["cleared_at"] == n2["cleared_at"] == 700.0
    assert who(outage, kind="alarm_cleared") == []
