"""The reference model on hand-made cases: every rule of docs/claims.md and its edges (no AWS)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.model.check import check
from tests.model.generate import _offset
from tests.model.model import Model
from tests.model.world import Settings, distance_m, timeline

SETTINGS = {"neighbour_radius_m": 400, "neighbour_window_s": 60, "offline_watch_s": 60, "outage_radius_m": 300,
            "outage_max_gap_s": 30, "sweep_interval_s": 60, "command_expiry_s": 60, "alarm_burst": 3,
            "alarm_repeat_hold_s": 120}
BASE = (39.9, 116.3)


def box(i: str, east_m: float, north_m: float = 0.0, **extra: Any) -> dict[str, Any]:
    lat, lng = _offset(*BASE, north_m, east_m)
    return {"id": i, "name": i, "lat": lat, "lng": lng, **extra}


def scenario(boxes: list[dict[str, Any]], events: list[dict[str, Any]], clients: list[dict[str, Any]] | None = None,
             **settings: Any) -> dict[str, Any]:
    if clients is None:  # one client per box: c<box id>
        clients = [{"id": f"c{b['id']}", "boxes": [b["id"]]} for b in boxes]
    return {"settings": {**SETTINGS, **settings}, "boxes": boxes, "clients": clients, "events": events}


def alarm(t: float, b: str, seq: int, cause: str = "overtemp", at: float | None = None,
          value: float = 95.0) -> dict[str, Any]:
    ev: dict[str, Any] = {"t": t, "box": b, "type": "alarm", "cause": cause, "value": value, "threshold": 85,
                          "seq": seq}
    if at is not None:
        ev["alarm_at"] = at
    return ev


def drop(t: float, b: str, v: int, at: float | None = None,
         reason: str = "MQTT_KEEP_ALIVE_TIMEOUT") -> dict[str, Any]:
    return {"t": t, "box": b, "type": "disconnected", "version": v, "at": t if at is None else at, "reason": reason}


def back(t: float, b: str, v: int, at: float | None = None) -> dict[str, Any]:
    return {"t": t, "box": b, "type": "connected", "version": v, "at": t if at is None else at}


def pushes(m: Model, kind: str) -> list[tuple[str, tuple[Any, ...], float]]:
    """(client, slot, due t) of every required push of a kind."""
    return sorted((e.client, e.slot, m.steps[e.first_step].t) for e in m.expectations if e.kind == kind)


def one(m: Model, kind: str) -> Any:
    found = [e for e in m.expectations if e.kind == kind]
    assert len(found) == 1, found
    return found[0]


T0 = Model(scenario([box("A", 0)], [])).start_ms


# ---------------------------------------------------------------------- world
def test_distance_is_h3s_great_circle() -> None:
    # Given two points 1 degree of latitude apart
    # When the distance is computed on h3's sphere
    # Then it is R * pi / 180 (h3.great_circle_distance gives the same)
    assert distance_m((0.0, 0.0), (1.0, 0.0)) == pytest.approx(6371007.180918475 * 3.141592653589793 / 180)
    # and 300 m east of the base point is ~300 m away
    b = box("B", 300)
    assert distance_m(BASE, (b["lat"], b["lng"])) == pytest.approx(300, abs=0.05)


def test_timeline_events_by_t_then_file_order_before_ticks_at_the_same_t() -> None:
    # Given events at t=60 (two, in file order), one at 5, and a 60 s schedule
    s = scenario([box("A", 0)], [drop(60, "A", 2), alarm(5, "A", 1), back(60, "A", 3)])
    steps = timeline(s, Settings.for_scenario(s))
    # Then the order is 5, the two events at 60 in file order, then the ticks at 60
    kinds = [(st.t, st.kind, (st.event or {}).get("type", st.function)) for st in steps[:6]]
    assert kinds[0] == (5.0, "event", "alarm")
    assert kinds[1:3] == [(60.0, "event", "disconnected"), (60.0, "event", "connected")]
    assert {k[2] for k in kinds[3:6]} == {"AlarmSweepFunction", "CommandExpiryFunction", "OfflineSweepFunction"}
    # and schedules run for the settle period after the last event: max(watch, gap, expiry, hold)
    # + 2 periods (here the hold window, 120 s, is the longest)
    assert steps[-1].t == 60 + 120 + 2 * 60


# ---------------------------------------------------------------------- first alarm
def test_first_alarm_to_each_bound_client_once() -> None:
    # Given box A bound to c1 twice and to c2
    s = scenario([box("A", 0)], [alarm(10, "A", 1)],
                 clients=[{"id": "c1", "boxes": ["A", "A"]}, {"id": "c2", "boxes": ["A"]}])
    m = Model(s)
    # Then each client gets the alarm once, due at its arrival
    assert pushes(m, "alarm") == [("c1", ("A", 1, T0 + 10_000), 10.0), ("c2", ("A", 1, T0 + 10_000), 10.0)]


def test_redelivery_is_nothing_new_but_a_reused_seq_with_other_content_is_a_new_alarm() -> None:
    # Given the same alarm delivered twice, then seq 1 again with another time (counter restarted)
    s = scenario([box("A", 0)], [alarm(10, "A", 1), alarm(12, "A", 1, at=10), alarm(300, "A", 1)])
    m = Model(s)
    # Then two alarms are pushed: the first and the restarted one
    assert [e.slot for e in m.expectations if e.kind == "alarm"] == [("A", 1, T0 + 10_000), ("A", 1, T0 + 300_000)]


def test_unknown_box_and_spoofed_alarms_push_nothing() -> None:
    s = scenario([box("A", 0)], [alarm(10, "Z", 1), {**alarm(11, "A", 1), "client_id": "B"}])
    m = Model(s)
    assert not m.expectations and len(m.rejected) == 2


# ---------------------------------------------------------------------- flood hold-down
def test_flood_pushes_the_burst_and_one_summary_of_the_rest() -> None:
    # Given 6 overtemp alarms of A within the hold window (burst 3, hold 120 s), one overcurrent
    events = [alarm(10 + i, "A", i + 1) for i in range(6)] + [alarm(20, "A", 7, cause="overcurrent")]
    m = Model(scenario([box("A", 0)], events))
    # Then seqs 1-3 and the other cause are pushed, 4-6 held
    assert sorted(e.slot[1] for e in m.expectations if e.kind == "alarm") == [1, 2, 3, 7]
    # and one summary of 3, due at the first sweep at or after 10 + 120 = 130 s (the tick at 180 s)
    summary = one(m, "alarm_summary")
    assert summary.content["count"] == 3 and summary.slot == ("A", "overtemp")
    assert m.steps[summary.first_step].t == 180.0
    assert summary.content["window_start"] == T0 + 10_000 and summary.content["window_end"] == T0 + 130_000


def test_an_alarm_exactly_at_the_end_of_the_hold_window_opens_the_next_one() -> None:
    # Given 4 alarms in the window [10, 130) and a fifth received at exactly 130 s
    events = [alarm(10 + i, "A", i + 1) for i in range(4)] + [alarm(130, "A", 5)]
    m = Model(scenario([box("A", 0)], events))
    # Then the fifth is pushed (start inclusive, end exclusive) and the first window held one
    assert sorted(e.slot[1] for e in m.expectations if e.kind == "alarm") == [1, 2, 3, 5]
    assert one(m, "alarm_summary").content["count"] == 1


def test_a_held_alarm_is_still_a_neighbour_and_updates_the_other_way() -> None:
    # Given A floods (4th held) and B, 200 m away, alarms after the held one only
    events = [alarm(10 + i, "A", i + 1, at=10 + i) for i in range(3)]
    events += [alarm(100, "A", 4, at=100), alarm(110, "B", 1, at=110)]
    m = Model(scenario([box("A", 0), box("B", 200)], events, neighbour_window_s=30))
    # Then B's second alarm names A through the held alarm (only it is within 30 s)
    nearby = one(m, "same_cause_nearby")
    assert nearby.client == "cB" and [b for b, _ in nearby.content["nearest"]] == ["A"]


# ---------------------------------------------------------------------- second alarm
def test_neighbours_within_the_window_either_direction_inclusive() -> None:
    # Given B's alarm raised exactly 60 s (the window) before A's, but delivered after it
    s = scenario([box("A", 0), box("B", 200), box("C", -250)],
                 [alarm(100, "A", 1, at=100), alarm(105, "B", 1, at=40), alarm(106, "C", 1, at=39.999)])
    m = Model(s)
    # Then B (processed second, |100 - 40| = 60) tells its clients about A; C (60.001 s) is nobody's neighbour
    assert [(e.client, e.slot[0]) for e in m.expectations if e.kind == "same_cause_nearby"] == [("cB", "B")]
    # and A's clients hear of B the other way
    assert [(e.client, e.slot) for e in m.expectations if e.kind == "nearby_update"] == [("cA", ("overtemp", "B"))]


def test_neighbours_need_the_same_cause_another_box_and_the_radius() -> None:
    s = scenario([box("A", 0), box("B", 200), box("F", 600)],
                 [alarm(10, "A", 1), alarm(11, "A", 2), alarm(12, "B", 1, cause="overcurrent"), alarm(13, "F", 1)])
    m = Model(s)
    # Then no second alarm: A's own alarms, another cause, and a box 600 m away are not neighbours
    assert not [e for e in m.expectations if e.kind in ("same_cause_nearby", "nearby_update")]


def test_radius_is_inclusive_and_a_distance_on_the_edge_is_flagged() -> None:
    # Given the neighbour radius set to exactly the distance between A and B
    a, b = box("A", 0), box("B", 250)
    r = distance_m((a["lat"], a["lng"]), (b["lat"], b["lng"]))
    m = Model(scenario([a, b], [alarm(10, "A", 1), alarm(11, "B", 1)], neighbour_radius_m=r))
    # Then they are neighbours (<=), and the model says floats decide here (the generator avoids it)
    assert one(m, "same_cause_nearby").slot[0] == "B"
    assert any("neighbour radius" in x for x in m.ambiguities)


def test_settings_default_to_the_template_then_to_the_claims() -> None:
    # Given a scenario that sets nothing
    s = Settings.for_scenario({"events": []})
    # Then the template's defaults apply (NeighbourRadiusM 1000, OfflineWatchS 300), and the flood
    # parameters default to the claims' 3 alarms / 300 s when the template does not declare them
    assert (s.neighbour_radius_m, s.offline_watch_ms, s.outage_max_gap_ms) == (1000, 300_000, 60_000)
    assert (s.alarm_burst, s.alarm_hold_ms) == (3, 300_000)
    # and replay's rule holds: a sweep interval sets the offline sweep's schedule
    s = Settings.for_scenario({"settings": {"sweep_interval_s": 30}})
    assert ("OfflineSweepFunction", 30) in s.schedules


def test_second_alarm_lists_distinct_boxes_nearest_first_with_the_count() -> None:
    s = scenario([box("A", 0), box("B", 300), box("C", 100), box("D", 50, 50)],
                 [alarm(10, "B", 1), alarm(11, "B", 2), alarm(12, "C", 1), alarm(13, "A", 1)])
    nearby = next(e for e in Model(s).expectations if e.kind == "same_cause_nearby" and e.slot[0] == "A")
    assert [b for b, _ in nearby.content["nearest"]] == ["C", "B"] and nearby.content["count"] == 2


def test_nearby_update_once_per_client_and_cause_per_window_received_clock() -> None:
    # Given A alarms, then B (t=20), C (t=79) and D (t=80) join, all within the alarm-time window
    boxes = [box("A", 0), box("B", 100), box("C", 0, 100), box("D", 0, -100), box("E", 100, 100)]
    clients = [{"id": "a", "boxes": ["A"]}, {"id": "ab", "boxes": ["A", "B"]}, {"id": "e", "boxes": ["E"]}]
    events = [alarm(10, "A", 1, at=10), alarm(20, "B", 1, at=20), alarm(79, "C", 1, at=50), alarm(80, "D", 1, at=55)]
    m = Model(scenario(boxes, events, clients=clients))
    ups = [(e.client, e.slot[1], m.steps[e.first_step].t) for e in m.expectations if e.kind == "nearby_update"]
    # Then "a" hears of B (window [20, 80)), not of C (79 < 80), and of D at exactly 80 (a new window);
    # "ab" is bound to B itself when B joins (it gets the second alarm instead), hears of C at 79, not of D
    assert ups == [("a", "B", 20.0), ("ab", "C", 79.0), ("a", "D", 80.0)]
    # and the update names the client's own box nearest the newcomer
    d_update = next(e for e in m.expectations if e.kind == "nearby_update" and e.slot[1] == "D")
    assert d_update.content["own"][0][0] == "A"


# ---------------------------------------------------------------------- third alarm
def test_third_alarm_watch_is_inclusive_on_the_received_clock() -> None:
    # Given alarms received at 10 s (raised at -100: backlog) with drops at exactly 10 + 60 s, and
    # at 60.001 s after another box's alarm
    s = scenario([box("A", 0), box("B", 2000)],
                 [alarm(10, "A", 1, at=-100), alarm(10, "B", 1), drop(70, "A", 2), drop(70.001, "B", 2)])
    m = Model(s)
    # Then A (70 = 10 + 60, inclusive) gets the third alarm, B (one ms late) does not
    exp = one(m, "offline_after_alarm")
    assert exp.slot == ("A", 1, T0 - 100_000) and exp.content["offline_at"] == T0 + 70_000


def test_third_alarm_at_the_start_edge_and_late_lifecycle_event() -> None:
    # Given a drop whose own timestamp equals the alarm's arrival, delivered 30 s later
    m = Model(scenario([box("A", 0)], [alarm(10, "A", 1), drop(40, "A", 2, at=10)]))
    assert one(m, "offline_after_alarm").first_step == 1


def test_clean_disconnect_flaps_and_a_new_watch() -> None:
    # Given a clean goodbye, then flaps inside the watch, then a later alarm and a drop in its watch
    events = [alarm(10, "A", 1), drop(15, "A", 2, reason="CLIENT_INITIATED_DISCONNECT"), back(16, "A", 3),
              drop(20, "A", 4), back(25, "A", 5), drop(30, "A", 6), drop(31, "A", 6), back(35, "A", 7),
              alarm(200, "A", 2), drop(230, "A", 8)]
    m = Model(scenario([box("A", 0)], events))
    # Then one third alarm for alarm 1 (first unclean drop at 20) and one for alarm 2
    got = [(e.slot[1], e.content["offline_at"] - T0) for e in m.expectations if e.kind == "offline_after_alarm"]
    assert got == [(1, 20_000), (2, 230_000)]


def test_watched_alarm_is_the_latest_received_ties_to_the_higher_seq() -> None:
    m = Model(scenario([box("A", 0)], [alarm(10, "A", 2), alarm(10, "A", 3, at=5), alarm(5, "A", 9), drop(20, "A", 2)]))
    assert one(m, "offline_after_alarm").slot[1] == 3


def test_a_disconnect_delivered_after_the_reconnect_is_still_a_drop() -> None:
    # Given the drop (v2, at 30) arrives after the reconnect (v3, at 35): the box did go offline
    m = Model(scenario([box("A", 0)], [alarm(10, "A", 1), back(35, "A", 3), drop(50, "A", 2, at=30)]))
    assert one(m, "offline_after_alarm").content["offline_at"] == T0 + 30_000
    # and Presence keeps the box online (the late disconnect does not supersede)
    assert m.presence["A"].online


def test_an_alarm_arriving_after_its_drop_at_the_same_instant_is_ambiguous() -> None:
    m = Model(scenario([box("A", 0)], [drop(10, "A", 2), alarm(10, "A", 1)]))
    assert m.ambiguities and not [e for e in m.expectations if e.kind == "offline_after_alarm"]


# ---------------------------------------------------------------------- fourth alarm
def outage_boxes() -> list[dict[str, Any]]:
    # X, Y 200 m apart; Z 200 m east of Y (400 m from X); N 100 m north of X; F 500 m north of X
    return [box("X", 0), box("Y", 200), box("Z", 400), box("N", 0, 100), box("F", 0, 500)]


def live_clusters(m: Model, t: float) -> list[tuple[list[str], list[str]]]:
    step = next(i for i in m.sweeps if m.steps[i].t == t)
    return [(sorted(c.boxes), sorted(c.eligible)) for c in m.sweeps[step] if c.live]


def test_fourth_alarm_cluster_and_its_eligible_clients() -> None:
    # Given X and Y drop 10 s apart and stay offline
    m = Model(scenario(outage_boxes(), [drop(100, "X", 2), drop(110, "Y", 2)]))
    # Then at the sweep of 120 s the cluster X, Y is live; N's client (100 m from X) is eligible,
    # Z's (200 m from Y) too, F's (500 m) not, and the members' own clients not
    assert live_clusters(m, 120) == [(["X", "Y"], ["cN", "cZ"])]


def test_link_edges_gap_inclusive_and_reconnect_exclusive() -> None:
    # Given Y drops exactly the gap (30 s) after X; Z drops at the instant Y is back
    events = [drop(100, "X", 2), drop(130, "Y", 2), back(150, "Y", 3), drop(150, "Z", 2)]
    m = Model(scenario(outage_boxes(), events))
    # Then X-Y are linked (30 <= 30) but Z is not linked to Y (150 < 150 fails) nor to X (50 s)
    assert [c for c, _ in live_clusters(m, 180)] == [["X", "Y"]]
    # and one millisecond more, or Y back one millisecond later, changes that
    events = [drop(100, "X", 2), drop(130.001, "Y", 2)]
    assert live_clusters(Model(scenario(outage_boxes(), events)), 180) == []
    events = [drop(100, "X", 2), drop(130, "Y", 2), back(150.001, "Y", 3, at=150.001), drop(150, "Z", 2)]
    assert [c for c, _ in live_clusters(Model(scenario(outage_boxes(), events)), 180)] == [["X", "Y", "Z"]]


def test_quick_reconnect_before_the_sweep_still_warns() -> None:
    # Given X drops at 5 s, Y at 20 s, X is back at 30 s, before the sweep at 60 s
    m = Model(scenario(outage_boxes(), [drop(5, "X", 2), drop(20, "Y", 2), back(30, "X", 3)]))
    # Then the cluster is live (Y still out): N and Z are warned; X's client is a member's, not warned
    assert live_clusters(m, 60) == [(["X", "Y"], ["cN", "cZ"])]


def test_all_back_before_the_sweep_is_a_resolved_blip() -> None:
    m = Model(scenario(outage_boxes(), [drop(5, "X", 2), drop(20, "Y", 2), back(30, "X", 3), back(40, "Y", 3)]))
    step = next(i for i in m.sweeps if m.steps[i].t == 60)
    assert [sorted(c.boxes) for c in m.sweeps[step]] == [["X", "Y"]] and not m.sweeps[step][0].live


def test_late_lifecycle_event_decided_at_the_sweep_after_it_arrives() -> None:
    # Given Y's drop (at 110) arrives only at 200 s
    m = Model(scenario(outage_boxes(), [drop(100, "X", 2), drop(200, "Y", 2, at=110)]))
    assert live_clusters(m, 120) == [] and [c for c, _ in live_clusters(m, 240)] == [["X", "Y"]]


def test_offline_recipient_is_not_eligible() -> None:
    m = Model(scenario(outage_boxes(), [drop(10, "N", 2), drop(100, "X", 2), drop(110, "Y", 2)]))
    assert live_clusters(m, 120) == [(["X", "Y"], ["cZ"])]


# ---------------------------------------------------------------------- power-off
def power(t: float, client: str, b: str, key: str) -> dict[str, Any]:
    return {"t": t, "type": "power_off", "client": client, "box": b, "key": key}


def report(t: float, b: str, state: str, key: str) -> dict[str, Any]:
    return {"t": t, "type": "power_state", "box": b, "state": state, "key": key}


def test_power_off_results() -> None:
    # Given: k1 confirmed; k2 reported exactly at its expiry instant (before that instant's sweep);
    # k3 never confirmed; k4 done after it expired; k5 failed after it expired; a stranger's request
    events = [power(0, "cA", "A", "k1"), report(5, "A", "off", "k1"),
              power(0, "cA", "A", "k2"), report(60, "A", "failed", "k2"),
              power(1, "cA", "A", "k3"),
              power(2, "cA", "A", "k4"), report(130, "A", "off", "k4"),
              power(3, "cA", "A", "k5"), report(131, "A", "refused", "k5"),
              power(4, "cB", "A", "k6"), power(5, "cA", "A", "k1")]
    m = Model(scenario([box("A", 0), box("B", 5000)], events))
    got = sorted((e.slot, m.steps[e.first_step].t) for e in m.expectations if e.kind == "power_off_result")
    # Then (expiry 60 s; command sweeps at 60, 120, ...): k2 settles at 60 before the sweep
    assert got == [(("k1", "succeeded"), 5.0), (("k2", "failed"), 60.0), (("k3", "expired"), 120.0),
                   (("k4", "expired"), 120.0), (("k4", "succeeded"), 130.0), (("k5", "expired"), 120.0)]


def test_command_expires_at_the_sweep_exactly_at_its_deadline() -> None:
    m = Model(scenario([box("A", 0)], [power(0, "cA", "A", "k1")]))
    assert m.steps[one(m, "power_off_result").first_step].t == 60.0


# ---------------------------------------------------------------------- the checker
def push(m: Model, kind: str, client: str, step: int, **data: Any) -> dict[str, Any]:
    return {"step": step, "client": client, "kind": kind, "data": {"kind": kind, **data}}


def test_checker_missing_forbidden_twice_late_and_content() -> None:
    m = Model(scenario([box("A", 0)], [alarm(10, "A", 1), alarm(20, "A", 2)]))
    first = next(e for e in m.expectations if e.slot[1] == 1)
    ok = push(m, "alarm", "cA", first.first_step, box="A", seq=1, alarm_time=T0 + 10_000, cause="overtemp",
              value=95.0, threshold=85)
    assert check(m, [ok, {**ok, "data": {**ok["data"], "seq": 2, "alarm_time": T0 + 20_000}}]).ok is False
    result = check(m, [ok, ok, {**ok, "client": "zed"}, {**ok, "data": {**ok["data"], "value": 1.0}}])
    assert sorted(d.cls for d in result.disagreements) == ["alarm:forbidden", "alarm:missing", "alarm:twice",
                                                           "alarm:twice"]
    late = {**ok, "step": first.first_step + 1}
    assert [d.cls for d in check(m, [late]).disagreements] == ["alarm:late", "alarm:missing"]
    wrong = {**ok, "data": {**ok["data"], "value": 1.0}}
    assert [d.cls for d in check(m, [wrong]).disagreements] == ["alarm:content:value", "alarm:missing"]


def test_checker_fourth_alarm_growth_allowed_repeats_and_strangers_forbidden() -> None:
    events = [drop(100, "X", 2), drop(110, "Y", 2), drop(150, "Z", 2)]
    m = Model(scenario(outage_boxes(), events))
    s120 = next(i for i in m.sweeps if m.steps[i].t == 120)
    s180 = next(i for i in m.sweeps if m.steps[i].t == 180)
    first = [push(m, "neighbour_outage", c, s120, box=c[1:], offline_boxes=["X", "Y"]) for c in ("cN", "cZ")]
    # Then telling cN and cZ at 120 is all that is required (Z joining at 180 may be told, or not)
    assert check(m, first).ok
    growth = push(m, "neighbour_outage", "cN", s180, box="N", offline_boxes=["X", "Y"])
    # but the same content again is forbidden, as is a push to a member's client or outside a sweep
    assert [d.cls for d in check(m, [*first, growth]).disagreements] == ["neighbour_outage:forbidden"]
    stranger = push(m, "neighbour_outage", "cX", s120, box="X", offline_boxes=["X", "Y"])
    assert [d.cls for d in check(m, [*first, stranger]).disagreements] == ["neighbour_outage:forbidden"]
    offsweep = push(m, "neighbour_outage", "cN", 0, box="N", offline_boxes=["X", "Y"])
    assert "neighbour_outage:forbidden" in [d.cls for d in check(m, [offsweep]).disagreements]
    # and nobody told is a miss per eligible client
    assert sorted(d.client for d in check(m, []).disagreements) == ["cN", "cZ"]


# ------------------------------------------------------------------ the alarm's life
def clear(t: float, b: str, seq: int, cause: str = "overtemp") -> dict[str, Any]:
    return {"t": t, "box": b, "type": "clear", "cause": cause, "seq": seq}


def ack(t: float, client: str, b: str, disposition: str = "real", cause: str = "overtemp") -> dict[str, Any]:
    return {"t": t, "type": "ack", "client": client, "box": b, "cause": cause, "disposition": disposition}


def test_model_reminds_at_the_first_sweep_at_or_after_first_plus_escalate_after() -> None:
    # Given an alarm at 10 s nobody acknowledges (EscalateAfterS 100, sweeps every 60 s)
    m = Model(scenario([box("A", 0)], [alarm(10, "A", 1)], escalate_after_s=100))
    # Then one reminder, due at the sweep of 120 s (110 is not a sweep time)
    [(client, slot, due)] = pushes(m, "reminder")
    assert (client, slot[:2], due) == ("cA", ("A", "overtemp"), 120.0)


def test_model_an_ack_or_a_clear_before_the_reminder_stops_it_even_at_the_due_instant() -> None:
    # Given alarms at 0 s: A acked at exactly 120 s (an event before that instant's schedules), B cleared
    m = Model(scenario([box("A", 0), box("B", 5000)],
                       [alarm(0, "A", 1), alarm(0, "B", 1), ack(120, "cA", "A"), clear(100, "B", 2)],
                       clients=[{"id": "cA", "boxes": ["A"]}, {"id": "zA", "boxes": ["A"]},
                                {"id": "cB", "boxes": ["B"]}], escalate_after_s=120))
    # Then no reminder; the ack tells the other client of A, the clear every client of B
    assert pushes(m, "reminder") == []
    assert [(c, due) for c, _, due in pushes(m, "acknowledged")] == [("zA", 120.0)]
    assert [(c, due) for c, _, due in pushes(m, "alarm_cleared")] == [("cB", 100.0)]


def test_model_repeats_join_one_alarm_and_a_second_ack_tells_nobody() -> None:
    # Given two alarms of one cause, then two acks
    m = Model(scenario([box("A", 0)], [alarm(0, "A", 1), alarm(5, "A", 2), ack(20, "cA", "A"),
                                       ack(30, "zA", "A", "test")],
                       clients=[{"id": "cA", "boxes": ["A"]}, {"id": "zA", "boxes": ["A"]}]))
    # Then one alarm of count 2; only the first ack is told (to zA)
    assert [(x.count, x.first_ms) for x in m.lives] == [(2, 0)]
    assert [c for c, _, _ in pushes(m, "acknowledged")] == ["zA"]


def test_model_a_third_alarm_escalates_until_the_box_is_back() -> None:
    # Given an alarm, the box dropping 20 s later, back at 100 s
    m = Model(scenario([box("A", 0)], [alarm(0, "A", 1), drop(20, "A", 2), back(100, "A", 3)],
                       escalate_after_s=100))
    # Then box_back_online at 100 s, and no reminder for the third alarm (it ended first)
    assert [(c, s[1], due) for c, s, due in pushes(m, "box_back_online")] == [("cA", "offline_after_alarm", 100.0)]
    assert [s[1] for _, s, _ in pushes(m, "reminder")] == ["overtemp"]


def test_checker_allows_a_fourth_alarms_reminder_once_after_the_warning() -> None:
    # Given cN and cZ warned at the 120 s sweep about X and Y (their boxes N and Z)
    m = Model(scenario(outage_boxes(), [drop(100, "X", 2), drop(110, "Y", 2), {"t": 480, "type": "scheduled"}]))
    at = {m.steps[i].t: i for i in m.sweep_steps}
    s120 = next(i for i in m.sweeps if m.steps[i].t == 120)
    warned = [push(m, "neighbour_outage", c, s120, box=c[1:], offline_boxes=["X", "Y"]) for c in ("cN", "cZ")]

    def reminder(step: int, box: str = "N", first_s: int = 120) -> dict[str, Any]:
        return push(m, "reminder", "c" + box, step, box=box, cause="neighbour_outage", first_at=T0 + first_s * 1000)

    # Then N's fourth alarm may remind cN at the first sweep 300 s after (or not at all)
    assert check(m, [*warned, reminder(at[420])]).ok and check(m, warned).ok
    # but not earlier, not twice, not for a box nobody was warned about then
    assert [d.cls for d in check(m, [*warned, reminder(at[360])]).disagreements] == ["reminder:early"]
    assert [d.cls for d in check(m, [*warned, reminder(at[420]), reminder(at[480])]).disagreements] == [
        "reminder:twice"]
    assert [d.cls for d in check(m, [*warned, reminder(at[420], first_s=60)]).disagreements] == ["reminder:forbidden"]


MANAGER = {"id": "mA", "boxes": ["A"], "role": "manager", "sms": "+8613800138000"}


def test_model_texts_the_managers_at_the_first_sweep_at_or_after_first_plus_twice_escalate_after() -> None:
    # Given an alarm at 10 s nobody acknowledges, A bound to cA and to its manager mA (EscalateAfterS 100)
    m = Model(scenario([box("A", 0)], [alarm(10, "A", 1), {"t": 300, "type": "scheduled"}],
                       clients=[{"id": "cA", "boxes": ["A"]}, MANAGER], escalate_after_s=100))
    # Then one SMS to the manager only, due at the sweep of 240 s (210 is not a sweep time)
    assert pushes(m, "escalation") == [("mA", ("A", T0 + 10_000), 240.0)]


def test_model_an_ack_between_the_reminder_and_the_sms_stops_the_sms() -> None:
    # Given the same alarm, acknowledged at 150 s (after the reminder of 120 s)
    m = Model(scenario([box("A", 0)], [alarm(10, "A", 1), ack(150, "cA", "A"), {"t": 300, "type": "scheduled"}],
                       clients=[{"id": "cA", "boxes": ["A"]}, MANAGER], escalate_after_s=100))
    # Then the reminder to both, and no SMS
    assert [c for c, _, _ in pushes(m, "reminder")] == ["cA", "mA"]
    assert pushes(m, "escalation") == []


def test_model_finds_more_sms_than_the_hourly_cap_ambiguous() -> None:
    # Given three unacknowledged alarms of A (two causes and a later one) and a cap of 1 SMS per hour
    events = [alarm(10, "A", 1), alarm(12, "A", 2, cause="overcurrent"), {"t": 300, "type": "scheduled"}]
    m = Model(scenario([box("A", 0)], events, clients=[MANAGER], escalate_after_s=100, sms_per_recipient_per_hour=1))
    # Then which SMS the cap lets through is the senders' order: the generator draws again
    assert any("SMS in an hour" in x for x in m.ambiguities)


def test_checker_matches_an_sms_on_box_and_first_at() -> None:
    # Given the 10 s alarm's SMS due at 240 s
    m = Model(scenario([box("A", 0)], [alarm(10, "A", 1), {"t": 300, "type": "scheduled"}],
                       clients=[MANAGER], escalate_after_s=100))
    at = {m.steps[i].t: i for i in m.sweep_steps}

    def sms(step: int, first_s: int = 10) -> dict[str, Any]:
        return push(m, "escalation", "mA", step, box="A", first_at=T0 + first_s * 1000)

    def checked(*pushed: dict[str, Any]) -> list[str]:
        return [d.cls for d in check(m, list(pushed), kinds=("escalation",)).disagreements]

    # Then the SMS at 240 s agrees; one at 180 s is early, a second one twice, none missing
    assert checked(sms(at[240])) == []
    assert checked(sms(at[180])) == ["escalation:early"]
    assert checked(sms(at[240]), sms(at[300])) == ["escalation:twice"]
    assert checked() == ["escalation:missing"]
    # and an SMS of an alarm nobody raised is forbidden
    assert checked(sms(at[240]), sms(at[240], first_s=99)) == ["escalation:forbidden"]


def test_checker_allows_a_fourth_alarms_sms_once_to_the_warned_boxs_manager() -> None:
    # Given cN warned at the 120 s sweep about X and Y; mN manages N (EscalateAfterS 100)
    clients = [{"id": "cN", "boxes": ["N"]}, {"id": "mN", "boxes": ["N"], "role": "manager", "sms": "+8613800138001"}]
    m = Model(scenario(outage_boxes(), [drop(100, "X", 2), drop(110, "Y", 2), {"t": 480, "type": "scheduled"}],
                       clients=clients, escalate_after_s=100))
    at = {m.steps[i].t: i for i in m.sweep_steps}
    s120 = next(i for i in m.sweeps if m.steps[i].t == 120)
    warned = [push(m, "neighbour_outage", c, s120, box="N", offline_boxes=["X", "Y"]) for c in ("cN", "mN")]

    def sms(step: int, client: str = "mN") -> dict[str, Any]:
        return push(m, "escalation", client, step, box="N", first_at=T0 + 120_000)

    def checked(*pushed: dict[str, Any]) -> list[str]:
        return [d.cls for d in check(m, [*warned, *pushed], kinds=("escalation",)).disagreements]

    # Then mN may get one SMS at a sweep 2 x 100 s after the warning (or none)
    assert checked(sms(at[360])) == [] and checked() == []
    # but not earlier, not twice, not to a client who is no manager
    assert checked(sms(at[300])) == ["escalation:early"]
    assert checked(sms(at[360]), sms(at[420])) == ["escalation:twice"]
    assert checked(sms(at[360], "cN")) == ["escalation:forbidden"]
