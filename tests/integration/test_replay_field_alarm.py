"""The alarm path as a real fleet delivers it, through `boxwatch replay` (real handlers, moto):
second alarm under reordering and skew, nearby updates, flood hold-down, sequence counter reuse.
The rules are docs/claims.md's; each scenario is in tests/scenarios/field_*.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from boxwatch_infra.replay import Replay, Scenario

SCENARIOS = Path(__file__).parents[1] / "scenarios"


def run(name: str) -> dict[str, Any]:
    return Replay(Scenario.load(SCENARIOS / name)).run()


def pushes(report: dict[str, Any], **match: Any) -> list[dict[str, Any]]:
    return [n for n in report["notifications"] if all(n.get(k) == v for k, v in match.items())]


def who(report: dict[str, Any], **match: Any) -> list[tuple[float, str]]:
    return sorted((n["t"], n["client"]) for n in pushes(report, **match))


# ------------------------------------------------------------------ second alarm, reordered and skewed
@pytest.fixture(scope="module")
def reordered() -> dict[str, Any]:
    return run("field_01_second_alarm_reordered.yaml")


def test_late_delivered_alarm_from_a_slow_clock_is_a_neighbour_of_an_earlier_processed_one(
        reordered: dict[str, Any]) -> None:
    # Given A (clock +120 s) alarmed at t=100 and B (clock -120 s, outbox backlog) raised earlier
    # but delivered at t=400: B's alarm time is 290 s *before* A's
    # When B is processed / Then B's clients hear of A (second alarm, either direction)
    assert [(n["client"], n["boxes"]) for n in pushes(reordered, kind="same_cause_nearby", box="BX-B")] == [
        ("bob", ["BX-A"]), ("dan", ["BX-A"])]
    # and A's client who is not bound to B gets one nearby_update naming B first, for her box A
    [update] = pushes(reordered, kind="nearby_update", t=400.0)
    assert (update["client"], update["box"], update["boxes"], update["cause"], update["seq"], update["count"]) == (
        "alice", "BX-A", ["BX-B"], "overtemp", 1, 1)


def test_first_alarms_are_unchanged(reordered: dict[str, Any]) -> None:
    assert who(reordered, kind="alarm") == [(100.0, "alice"), (100.0, "dan"), (400.0, "bob"), (400.0, "dan"),
                                            (450.0, "carol"), (999.0, "erin"), (1000.0, "fay")]


def test_second_alarm_lists_every_neighbour_nearest_first(reordered: dict[str, Any]) -> None:
    got = {(n["box"], n["client"]): n["boxes"] for n in pushes(reordered, kind="same_cause_nearby")}
    assert got == {("BX-B", "bob"): ["BX-A"], ("BX-B", "dan"): ["BX-A"], ("BX-C", "carol"): ["BX-A", "BX-B"],
                   ("BX-E", "erin"): ["BX-A"], ("BX-D", "fay"): ["BX-E", "BX-A"]}


def test_nearby_updates_at_most_one_per_client_and_cause_per_window(reordered: dict[str, Any]) -> None:
    got = [(n["t"], n["client"], n["box"], n["boxes"]) for n in pushes(reordered, kind="nearby_update")]
    assert sorted(got) == [
        (400.0, "alice", "BX-A", ["BX-B"]),
        # C: alice is inside her window [400, 1000); bob is told; dan too (a same_cause_nearby is
        # not a nearby_update), for his box nearest to C (A, 600 m; B is 781 m)
        (450.0, "bob", "BX-B", ["BX-C", "BX-A"]),
        (450.0, "dan", "BX-A", ["BX-C", "BX-B"]),
        # E at 999: alice (window to 1000) and dan (to 1050) are held back
        # D at 1000: alice's window has ended (end exclusive): she is told; erin for her box E
        (1000.0, "alice", "BX-A", ["BX-D", "BX-E"]),
        (1000.0, "erin", "BX-E", ["BX-D", "BX-A"]),
    ]


def test_nobody_hears_the_same_push_twice(reordered: dict[str, Any]) -> None:
    keys = [(n["client"], n["kind"], n["box"], n.get("seq"), n["t"]) for n in reordered["notifications"]]
    assert len(keys) == len(set(keys))
    assert reordered["rejected"] == []


# ------------------------------------------------------------------ flood hold-down
@pytest.fixture(scope="module")
def flood() -> dict[str, Any]:
    return run("field_09_alarm_flood.yaml")


def test_a_flood_pushes_the_burst_then_holds(flood: dict[str, Any]) -> None:
    # Given 30 overcurrent alarms from BX-1 in 30 s (and one at 50 s)
    # Then alice gets the first 3 one by one, and the one that opens the next window at 300
    assert [(n["t"], n["seq"]) for n in pushes(flood, kind="alarm", client="alice", cause="overcurrent")] == [
        (0.0, 1), (1.0, 2), (2.0, 3), (300.0, 33)]


def test_another_cause_is_never_held(flood: dict[str, Any]) -> None:
    assert [(n["t"], n["seq"]) for n in pushes(flood, kind="alarm", client="alice", cause="overtemp")] == [(10.0, 31)]


def test_one_summary_per_window_that_held(flood: dict[str, Any]) -> None:
    # Then the first alarm sweep at or after 0 + 300 s tells alice how many were held (seq 4-30, 32)
    [summary] = pushes(flood, kind="alarm_summary")
    assert (summary["t"], summary["client"], summary["box"], summary["cause"], summary["count"]) == (
        300.0, "alice", "BX-1", "overcurrent", 28)
    assert (summary["window_start"], summary["window_end"]) == (0.0, 300.0)


def test_held_alarms_are_correlated(flood: dict[str, Any]) -> None:
    # BX-2's alarm at 40 s finds BX-1 (whose alarms since 3 s were held)
    assert [(n["client"], n["boxes"]) for n in pushes(flood, kind="same_cause_nearby", box="BX-2")] == [
        ("bob", ["BX-1"])]
    # and each side's clients hear of the other once: alice at 40 (BX-2 joined), bob at 50 (a held
    # alarm of BX-1 after BX-2's)
    assert [(n["t"], n["client"], n["box"], n["boxes"]) for n in pushes(flood, kind="nearby_update")] == [
        (40.0, "alice", "BX-1", ["BX-2"]), (50.0, "bob", "BX-2", ["BX-1"])]
    # the alarm opening the second window is pushed with its second alarm
    assert [(n["t"], n["boxes"]) for n in pushes(flood, kind="same_cause_nearby", box="BX-1")] == [
        (300.0, ["BX-2"])]


def test_flood_costs_no_more_requests_per_alarm_than_the_common_path(flood: dict[str, Any]) -> None:
    ingest = flood["aws_calls_by_function"]["AlarmIngestFunction"]["dynamodb"]
    assert ingest / 34 <= 10, ingest / 34


# ------------------------------------------------------------------ sequence counter reuse
@pytest.fixture(scope="module")
def reuse() -> dict[str, Any]:
    return run("field_10_seq_reuse.yaml")


def test_reused_sequence_with_other_content_is_a_new_alarm(reuse: dict[str, Any]) -> None:
    # Given BX-1's seq 1 was stored / When the box sends seq 1 with other content (counter restarted)
    # Then it is pushed like any alarm, nothing is refused, and redeliveries push nothing
    assert [(n["t"], n["cause"], n["seq"]) for n in pushes(reuse, kind="alarm")] == [
        (0.0, "overtemp", 1), (100.0, "residual_current", 1), (200.0, "overtemp", 1)]
    assert reuse["rejected"] == []
