"""Third alarm (offline after an alarm) and fourth alarm (offline clusters) through `boxwatch
replay` (real handlers, template rules and schedule, moto), by the rules of docs/claims.md."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from boxwatch_infra.replay import Replay, Scenario

SCENARIOS = Path(__file__).parents[1] / "scenarios"


def run(name: str) -> dict[str, Any]:
    return Replay(Scenario.load(SCENARIOS / name)).run()


@pytest.fixture(scope="module")
def third() -> dict[str, Any]:
    return run("network_third_alarm.yaml")


@pytest.fixture(scope="module")
def outage() -> dict[str, Any]:
    return run("network_outage.yaml")


@pytest.fixture(scope="module")
def growth() -> dict[str, Any]:
    return run("network_outage_growth.yaml")


def notes(report: dict[str, Any], **match: Any) -> list[dict[str, Any]]:
    return [n for n in report["notifications"] if all(n.get(k) == v for k, v in match.items())]


# -------------------------------------------------------------------- third alarm
def test_offline_inside_the_watch_time_warns_every_bound_client(third: dict[str, Any]) -> None:
    # Given BX-A alarmed at t=0 / When it times out at t=299 (inside 300 s)
    warned = notes(third, box="BX-A", kind="offline_after_alarm")
    # Then alice and bob are told, at the disconnect, which alarm the outage follows
    assert sorted((n["client"], n["t"], n["alarm_seq"], n["cause"]) for n in warned) == [
        ("alice", 299.0, 1, "overtemp"), ("bob", 299.0, 1, "overtemp")]


def test_offline_after_the_watch_time_is_no_third_alarm(third: dict[str, Any]) -> None:
    # BX-B lost its connection 301 s after its alarm
    assert notes(third, box="BX-B", kind="alarm")
    assert not notes(third, box="BX-B", kind="offline_after_alarm")
    assert third["network"]["boxes"]["BX-B"]["online"] is False


def test_client_initiated_disconnect_is_no_third_alarm(third: dict[str, Any]) -> None:
    # BX-C said goodbye 50 s after its alarm: offline, but no warning
    assert not notes(third, box="BX-C", kind="offline_after_alarm")
    assert third["network"]["boxes"]["BX-C"] == {"online": False, "since": 70.0,
                                                 "reason": "CLIENT_INITIATED_DISCONNECT", "version": 2}


def test_late_out_of_order_disconnect_keeps_the_status_but_is_a_drop(third: dict[str, Any]) -> None:
    # Given BX-D reconnected with version 3 / When its version-2 disconnect (at 100) arrives afterwards
    # Then BX-D stays online since the reconnect; the drop at 100 did happen, inside the watch of its
    # alarm received at 30: one third alarm (docs/claims.md: a drop is any unclean disconnect)
    assert third["network"]["boxes"]["BX-D"] == {"online": True, "since": 110.0, "reason": None, "version": 3}
    assert [(n["client"], n["t"]) for n in notes(third, box="BX-D", kind="offline_after_alarm")] == [("dave", 125.0)]


def test_duplicate_disconnect_changes_nothing(third: dict[str, Any]) -> None:
    # BX-E's disconnect was delivered twice (t=100 and t=130): one third alarm, at the first
    assert [(n["client"], n["t"]) for n in notes(third, box="BX-E", kind="offline_after_alarm")] == [("erin", 100.0)]


def test_alarm_received_after_the_disconnect_is_not_watched(third: dict[str, Any]) -> None:
    # Given BX-F went offline at 200 and its alarm raised at 190 reached IoT Core at 215
    # Then no third alarm: the watch runs from reception (r = 215 > d = 200). An alarm RECEIVED
    # before the drop but stored after it was processed is the sweep's: tests/integration/test_faults_network.py
    assert notes(third, box="BX-F", kind="alarm")
    assert not notes(third, box="BX-F", kind="offline_after_alarm")


def test_offline_without_an_alarm_warns_no_one(third: dict[str, Any]) -> None:
    assert not notes(third, box="BX-G")
    assert not third["rejected"]


def test_a_box_back_after_its_third_alarm_is_told_once_to_the_clients_warned(third: dict[str, Any]) -> None:
    # Given BX-A's third alarm at 299 s / When it reconnects at 500 s (the connect delivered twice)
    back = notes(third, box="BX-A", kind="box_back_online")
    # Then the clients told it went dark hear, once each, that it is back, and since when it was out
    warned = {n["client"] for n in notes(third, box="BX-A", kind="offline_after_alarm")}
    assert sorted((n["client"], n["t"], n["first_at"]) for n in back) == [(c, 500.0, 299.0) for c in sorted(warned)]
    # ... and no box that never went dark after an alarm is announced back
    assert {n["box"] for n in notes(third, kind="box_back_online")} == {"BX-A"}


# -------------------------------------------------------------------- fourth alarm
def test_cluster_of_three_warns_exactly_the_online_boxes_within_the_radius(outage: dict[str, Any]) -> None:
    warned = notes(outage, kind="neighbour_outage")
    # Then each warning lists the cluster (O1-O3 linked through O2, X's episode [110, 120) linked to
    # O1's) and names the recipient's online box
    assert {tuple(n["offline_boxes"]) for n in warned} == {("O1", "O2", "O3", "X")}
    assert {n["box"] for n in warned} == {"N1", "N2", "N3"}
    # ann (N1+N3) and gil (O2+N1) hear once, about their nearest box; nobody else hears
    assert sorted((n["client"], n["box"]) for n in warned) == [
        ("ann", "N1"), ("ben", "N2"), ("cat", "N3"), ("gil", "N1")]
    # at the first sweep that saw all three (O3 dropped at 165), despite the schedule firing twice
    assert {n["t"] for n in warned} == {180.0}


def test_not_warned_outside_the_radius_offline_or_a_member(outage: dict[str, Any]) -> None:
    clients = {n["client"] for n in outage["notifications"]}
    assert not clients & {"dan", "eve", "fox"}  # F1 at 1.1x radius, F2 offline, O1 a member


def test_late_disconnect_keeps_the_status_and_joins_the_cluster(outage: dict[str, Any]) -> None:
    # X's version-2 disconnect (at 110) arrived after its reconnect (v3, at 120): X stays online, but
    # its episode [110, 120) began while O1 was offline, 250 m and 10 s from O1's drop: X is a member
    # (docs/claims.md "Fourth alarm"), so its own client is not warned as a neighbour
    assert outage["network"]["boxes"]["X"]["online"] is True
    assert not notes(outage, client="xia")


def test_two_boxes_twice_the_gap_apart_and_a_lone_box_warn_no_one(outage: dict[str, Any]) -> None:
    # P1/P2 (300 m apart, 120 s apart) and L1 are offline, yet pat and lou hear nothing
    boxes = outage["network"]["boxes"]
    assert not boxes["P1"]["online"] and not boxes["P2"]["online"] and not boxes["L1"]["online"]
    assert not notes(outage, client="pat") and not notes(outage, client="lou")
    assert [i["members"] for i in outage["network"]["incidents"]] == [["O1", "O2", "O3", "X"]]


def test_incident_resolves_when_its_boxes_are_back(outage: dict[str, Any]) -> None:
    (incident,) = outage["network"]["incidents"]
    assert (incident["state"], incident["opened_at"], incident["resolved_at"]) == ("resolved", 100.0, 420.0)


def test_the_all_clear_goes_once_to_exactly_the_clients_warned(outage: dict[str, Any]) -> None:
    # Given the cluster's clients were warned at 180 s / When its last box is back (O3 at 420 s)
    warned = sorted(n["client"] for n in notes(outage, kind="neighbour_outage"))
    clear = notes(outage, kind="all_clear")
    # Then each of them hears it is over, once, in the sweep that resolves it, naming the boxes back
    assert sorted(n["client"] for n in clear) == warned == ["ann", "ben", "cat", "gil"]
    assert {(n["t"], tuple(n["boxes"]), tuple(n["dark"])) for n in clear} == {(420.0, ("O1", "O2", "O3", "X"), ())}


def test_growing_cluster_one_update_per_sweep_never_the_same_content(growth: dict[str, Any]) -> None:
    warned = notes(growth, kind="neighbour_outage")
    per_client: dict[str, list[tuple[float, list[str]]]] = {}
    for n in warned:
        per_client.setdefault(n["client"], []).append((n["t"], n["offline_boxes"]))
    # amy (near G1/G2) hears of the cluster, then one update per sweep in which it grew
    assert per_client["amy"] == [(180.0, ["G1", "G2"]), (240.0, ["G1", "G2", "G3"]),
                                 (300.0, ["G1", "G2", "G3", "G4"])]
    # bo's box is near G4 only: one warning, when G4 joined
    assert per_client["bo"] == [(300.0, ["G1", "G2", "G3", "G4"])]
    # cy (M1 and M4) follows the nearest box and never hears twice in a sweep
    assert per_client["cy"] == per_client["amy"]
    assert "di" not in per_client
    for items in per_client.values():
        assert max(Counter(t for t, _ in items).values()) == 1
        assert len({tuple(b) for _, b in items}) == len(items)


def test_incident_stays_open_until_the_last_box_is_back(growth: dict[str, Any]) -> None:
    (incident,) = growth["network"]["incidents"]
    assert incident["members"] == ["G1", "G2", "G3", "G4"]
    assert (incident["state"], incident["resolved_at"]) == ("resolved", 620.0)


def test_report_counts_one_publish_per_push(outage: dict[str, Any], growth: dict[str, Any]) -> None:
    assert outage["aws_calls"]["sns"] == len(outage["notifications"])
    assert growth["aws_calls"]["sns"] == len(growth["notifications"])
