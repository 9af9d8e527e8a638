"""Network status as real fleets deliver it (docs/claims.md "Third alarm", "Fourth alarm"): alarm
backlogs, skewed box clocks, flaps, quick reconnects, lifecycle events late, twice and out of
order, through `boxwatch replay` (real handlers, template rules and schedules, moto)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from boxwatch_infra.replay import Replay, Scenario

SCENARIOS = Path(__file__).parents[1] / "scenarios"


def run(name: str) -> dict[str, Any]:
    return Replay(Scenario.load(SCENARIOS / name)).run()


def scenario(name: str) -> Any:
    """A module-scoped fixture: the report of one scenario file, run once."""
    return pytest.fixture(scope="module")(lambda: run(name))


backlog = scenario("field_02_third_alarm_backlog.yaml")
faulted = scenario("field_03_third_alarm_after_faults.yaml")
flaps = scenario("field_04_third_alarm_flaps.yaml")
quick = scenario("field_05_quick_reconnect.yaml")
redeployed = scenario("field_06_redeploy_radius.yaml")


def notes(report: dict[str, Any], **match: Any) -> list[dict[str, Any]]:
    return [n for n in report["notifications"] if all(n.get(k) == v for k, v in match.items())]


def third(report: dict[str, Any], client: str) -> list[tuple[float, str, int]]:
    return [(n["t"], n["box"], n["alarm_seq"]) for n in notes(report, client=client, kind="offline_after_alarm")]


# -------------------------------------------------------------------- third alarm: the received_at clock
def test_watch_runs_from_when_the_alarm_was_received_not_raised(backlog: dict[str, Any]) -> None:
    # Given an alarm raised at 50 but received at 400 (outbox backlog) / When the box drops at 460
    # Then its client is told once, although the disconnect was delivered twice
    assert third(backlog, "amy") == [(460.0, "BX-A", 1)]


def test_a_fast_or_slow_box_clock_does_not_move_the_watch(backlog: dict[str, Any]) -> None:
    # alarm_time 2 min ahead of / behind IoT Core's clock: the watch still starts at reception
    assert third(backlog, "ben") == [(130.0, "BX-B", 1)]
    assert third(backlog, "cat") == [(450.0, "BX-C", 1)]


def test_watch_edges_are_inclusive(backlog: dict[str, Any]) -> None:
    assert third(backlog, "dan") == [(310.0, "BX-D", 1)]  # d = r + 300
    assert third(backlog, "eve") == []  # d = r + 301


def test_an_alarm_received_after_the_drop_is_not_watched(backlog: dict[str, Any]) -> None:
    # the alarm reached IoT Core at 215, the box dropped at 200: r > d
    assert notes(backlog, client="fay", kind="alarm")
    assert third(backlog, "fay") == []


def test_the_latest_received_alarm_is_the_watched_one(backlog: dict[str, Any]) -> None:
    # seq 2 was received last (200), though seq 1 has the later alarm_time
    assert third(backlog, "gus") == [(250.0, "BX-G", 2)]


def test_a_disconnect_delivered_after_its_reconnect_is_still_a_drop(backlog: dict[str, Any]) -> None:
    # Given BX-H's reconnect (v3) arrived before its disconnect (v2, at 40)
    # Then the box stays online, and the drop at 40 (inside the watch) warns its client, once
    assert backlog["network"]["boxes"]["BX-H"]["online"] is True
    assert third(backlog, "hal") == [(60.0, "BX-H", 1)]


# -------------------------------------------------------------------- third alarm: at most once per alarm
def test_flaps_inside_the_watch_warn_once_and_a_later_alarm_starts_a_new_watch(flaps: dict[str, Any]) -> None:
    # Given one alarm and three drops (one delivered twice) in its watch, then a second alarm and two drops
    # Then one warning per alarm, at the first drop of each watch
    assert third(flaps, "alice") == [(50.0, "BX-A", 1), (450.0, "BX-A", 2)]
    assert [x for x in third(flaps, "bob") if x[1] == "BX-A"] == third(flaps, "alice")


def test_reordered_drops_of_one_watch_warn_once(flaps: dict[str, Any]) -> None:
    # BX-C: the late disconnect v2 (arrives 150) and the drop v4 (200) share the watched alarm
    assert third(flaps, "carl") == [(150.0, "BX-C", 1)]
    # (nobody acknowledged the alarm: its reminder follows, as for any unacknowledged alarm)
    assert Counter(n["kind"] for n in notes(flaps, client="carl")) == {"alarm": 1, "offline_after_alarm": 1,
                                                                      "reminder": 1}


# -------------------------------------------------------------------- fourth alarm: episodes
def test_a_quick_reconnect_does_not_hide_the_outage(quick: dict[str, Any]) -> None:
    # Given A dropped at 5, B (100 m) at 20 while A was offline, A back at 30, before the sweep at 60
    # Then NA's client is warned at 60, naming both; A's own client is not (A is a member)
    warned = notes(quick, client="nat", kind="neighbour_outage")
    assert [(n["t"], n["box"], n["offline_boxes"]) for n in warned] == [(60.0, "NA", ["A", "B"])]
    assert not notes(quick, client="ava", kind="neighbour_outage")


def test_a_cluster_back_before_it_is_decided_is_a_resolved_blip(quick: dict[str, Any]) -> None:
    # C and D (one clean disconnect) dropped and were both back before the sweep at 120
    assert not notes(quick, client="nico")
    (blip,) = [i for i in quick["network"]["incidents"] if i["members"] == ["C", "D"]]
    assert (blip["state"], blip["blip"], blip["announced"]) == ("resolved", True, [])


def test_a_disconnect_arriving_minutes_late_still_clusters(quick: dict[str, Any]) -> None:
    # E's disconnect (at 130) arrived at 400, long past any event-time lookback; F (150) is offline
    warned = notes(quick, client="ned", kind="neighbour_outage")
    assert [(n["t"], n["offline_boxes"]) for n in warned] == [(420.0, ["E", "F"])]


def test_a_reconnect_delivered_before_its_disconnect_still_ends_the_episode(quick: dict[str, Any]) -> None:
    # G [240, 250) was offline when H dropped at 245 (delivered twice): linked, H is still offline
    warned = notes(quick, client="nga", kind="neighbour_outage")
    assert [(n["t"], n["offline_boxes"]) for n in warned] == [(300.0, ["G", "H"])]
    assert quick["network"]["boxes"]["G"]["online"] is True


def test_a_box_back_before_the_other_dropped_is_not_linked(quick: dict[str, Any]) -> None:
    # I [320, 330), J dropped at 340
    assert not notes(quick, client="nia")
    assert not [i for i in quick["network"]["incidents"] if "I" in i["members"]]


def test_a_member_dropping_again_is_no_news(quick: dict[str, Any]) -> None:
    # K and L dropped (told at 420); K was back at 430 and dropped again at 440, linked to L's episode
    warned = notes(quick, client="nkk", kind="neighbour_outage")
    assert [(n["t"], n["offline_boxes"]) for n in warned] == [(420.0, ["K", "L"])]
    (incident,) = [i for i in quick["network"]["incidents"] if "K" in i["members"]]
    assert incident["members"] == ["K", "L"] and incident["state"] == "open"


def test_nobody_hears_twice(quick: dict[str, Any], flaps: dict[str, Any], backlog: dict[str, Any]) -> None:
    for report in (quick, flaps, backlog):
        # a box back online is news once per third alarm it follows (its `first_at`)
        keys = Counter((n["client"], n["kind"], n["box"], n.get("seq"), n.get("alarm_seq"), n.get("first_at"),
                        tuple(n.get("offline_boxes", ())))
                       for n in report["notifications"])
        assert max(keys.values(), default=1) == 1
        assert not report["rejected"]


# -------------------------------------------------------------------- third alarm: failures
def test_a_failure_after_the_watch_was_taken_is_finished_by_the_retry(faulted: dict[str, Any]) -> None:
    # Given a throttled bindings read, a 5xx push and a crash, each on a drop inside an alarm's watch
    # Then every fault fired, nothing was refused, and each client heard the third alarm once
    assert [f["fired"] for f in faulted["faults"]] == [1, 1, 1]
    assert faulted["rejected"] == []
    told = Counter((n["client"], n["box"]) for n in notes(faulted, kind="offline_after_alarm"))
    assert told == {("c1", "BX-1"): 1, ("c2", "BX-1"): 1, ("d1", "BX-2"): 1, ("d2", "BX-2"): 1, ("e1", "BX-3"): 1}


def test_the_retry_tells_at_the_drop_not_at_a_later_sweep(faulted: dict[str, Any]) -> None:
    # Then the retry (at once in virtual time) told them, not the sweep a minute later
    assert {n["t"] for n in notes(faulted, kind="offline_after_alarm")} == {30.0, 130.0, 230.0}


# -------------------------------------------------------------------- a parameter change
def test_a_redeploy_with_a_larger_radius_still_finds_what_was_indexed_before(redeployed: dict[str, Any]) -> None:
    # Given boxes and A's alarm indexed while the radii were 500 m / 1000 m
    # When the stack is redeployed with 2000 m / 3000 m
    # Then B (2.5 km from A) hears of A, and N1 (1.2 km from the outage) is warned
    assert redeployed["rejected"] == []
    assert notes(redeployed, client="bea", kind="same_cause_nearby")[0]["boxes"] == ["A"]
    [outage] = notes(redeployed, client="nina", kind="neighbour_outage")
    assert outage["offline_boxes"] == ["O1", "O2"]
