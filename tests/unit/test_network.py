"""Network status without AWS: lifecycle event contract, event ordering, the third alarm's watch
window, offline-episode clustering (against brute force) and the notifications' rendering."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boxwatch import geo
from boxwatch.errors import InvalidInput
from boxwatch.events import PresenceEvent, ScheduledEvent
from boxwatch.incidents import Candidate, nearest_member
from boxwatch.models import BoxItem, IncidentItem
from boxwatch.network import (
    Drop,
    WatchedAlarm,
    alarm_within_watch,
    offline_after_alarm_notification,
    supersedes,
)
from boxwatch.outage import arrival_window_ms, cluster, evaluate_window_ms, late_checks_ms
from boxwatch.outage_notify import neighbour_outage_notification
from boxwatch.settings import Settings

EVENTS = Path(__file__).parents[2] / "events"


def load(name: str) -> dict[str, object]:
    doc: dict[str, object] = json.loads((EVENTS / name).read_text())
    return doc


# -------------------------------------------------------------------- contract
def test_aws_lifecycle_events_parse() -> None:
    # Given the documented shapes / When parsed / Then box, state, time and version come through
    up = PresenceEvent.parse(load("presence_connected.json"))
    down = PresenceEvent.parse(load("presence_disconnected_keepalive.json"))
    assert (up.box_id, up.online, up.version, up.timestamp) == ("BX-1", True, 1, 1767225600000)
    assert (down.online, down.clean, down.disconnect_reason, down.version) == (
        False, False, "MQTT_KEEP_ALIVE_TIMEOUT", 2)


@pytest.mark.parametrize(("initiated", "reason", "clean"), [
    (True, "CLIENT_INITIATED_DISCONNECT", True),
    (False, "CLIENT_INITIATED_DISCONNECT", True),
    (True, None, True),
    (False, "CONNECTION_LOST", False),
    (False, "SERVER_INITIATED_DISCONNECT", False),
    (None, None, False),
])
def test_only_a_client_initiated_disconnect_is_clean(initiated: bool | None, reason: str | None, clean: bool) -> None:
    doc = {**load("presence_disconnected_keepalive.json"), "clientInitiatedDisconnect": initiated,
           "disconnectReason": reason}
    assert PresenceEvent.parse(doc).clean is clean


def test_thing_name_names_the_box_when_present() -> None:
    doc = {**load("presence_connected.json"), "clientId": "session-17", "thingName": "BX-9"}
    assert PresenceEvent.parse(doc).box_id == "BX-9"


@pytest.mark.parametrize("event", [
    "connected",
    [1, 2],
    {"clientId": "BX-1", "timestamp": 1, "eventType": "subscribed", "versionNumber": 1},
    {"clientId": "BX-1", "timestamp": 1, "eventType": "connected", "versionNumber": -1},
    {"clientId": "a/b#", "timestamp": 1, "eventType": "connected", "versionNumber": 1},
    # our snake_case names are not AWS's: refused, not guessed
    {"client_id": "BX-1", "timestamp": 1, "event_type": "connected", "version": 1},
])
def test_malformed_lifecycle_events_are_rejected(event: object) -> None:
    with pytest.raises(InvalidInput):
        PresenceEvent.parse(event)


def test_scheduled_event_time_is_the_sweep_time() -> None:
    assert ScheduledEvent.parse(load("scheduled_sweep.json")).at_ms == 1767225780000
    with pytest.raises(InvalidInput):
        ScheduledEvent.parse({"time": "2026-01-01T00:03:00"})  # no zone: ambiguous


# -------------------------------------------------------------------- ordering
KINDS = st.tuples(st.integers(1, 6), st.booleans())  # (versionNumber, connected?)


@settings(max_examples=200, deadline=None)
@given(st.lists(KINDS, min_size=1, max_size=6, unique=True), st.randoms(use_true_random=False))
def test_any_delivery_order_ends_in_the_newest_event(events: list[tuple[int, bool]], rnd: object) -> None:
    # Given lifecycle events delivered in any order, each possibly twice
    deliveries = events + events[: len(events) // 2]
    rnd.shuffle(deliveries)  # type: ignore[attr-defined]
    stored_version: int | None = 0
    stored_online = True  # a registered box: online at version 0
    for version, online in deliveries:
        if supersedes(version, online, stored_version, stored_online):
            stored_version, stored_online = version, online
    # Then the box holds the newest one: highest version, a disconnect beating a connect at a tie
    version, online = max(events, key=lambda e: (e[0], not e[1]))
    assert (stored_version, stored_online) == (version, online)


def test_duplicate_and_late_events_do_not_supersede() -> None:
    assert not supersedes(2, False, 2, False)  # duplicate disconnect
    assert not supersedes(2, False, 3, True)  # late disconnect after the reconnect
    assert not supersedes(3, True, 3, False)  # the session's connect after its own disconnect
    assert supersedes(3, False, 3, True)  # AWS giving a session's two events one number
    assert supersedes(1, True, None, True)


def test_the_rule_stamps_arrival_and_an_event_without_it_arrived_at_its_own_time() -> None:
    doc = load("presence_disconnected_keepalive.json")
    assert PresenceEvent.parse(doc).arrived_at == doc["timestamp"]
    assert PresenceEvent.parse({**doc, "received_at": 1_767_225_900_000}).arrived_at == 1_767_225_900_000


# -------------------------------------------------------------------- third alarm window
def watched(seq: int, received_at: int, alarm_time: int | None = None) -> WatchedAlarm:
    return WatchedAlarm(f"RCV#{received_at:013d}#{seq:016d}", seq, "overtemp",
                        received_at if alarm_time is None else alarm_time, received_at)


def test_watch_window_edges_on_the_received_clock() -> None:
    # the box's clock says 50 s, IoT Core received it at 1,000 s: the watch runs from reception
    alarm = watched(4, 1_000_000, alarm_time=50_000)
    assert alarm_within_watch([alarm], 1_000_000, 300) == alarm  # d = r
    assert alarm_within_watch([alarm], 1_000_000 + 300_000, 300) == alarm  # d = r + watch
    assert alarm_within_watch([alarm], 1_000_000 + 300_001, 300) is None  # 1 ms after it
    assert alarm_within_watch([alarm], 999_999, 300) is None  # received after the disconnect
    older = watched(3, 900_000, alarm_time=2_000_000)  # older reception, later (skewed) alarm time
    assert alarm_within_watch([alarm, older], 1_100_000, 300) == alarm  # the latest received one
    tie = watched(9, 1_000_000)
    assert alarm_within_watch([alarm, tie], 1_100_000, 300) == tie  # same reception: the higher seq


# -------------------------------------------------------------------- clustering
RADIUS, GAP, RES = 500.0, 60, Settings().area_res
ORIGIN = (39.95, 116.30)


def brute_force(cands: list[Candidate]) -> set[frozenset[tuple[str, int]]]:
    """Transitive closure of docs/claims.md's link rule by plain graph search over all pairs, O(n^2)."""
    edges = {c.key: set() for c in cands}  # type: dict[tuple[str, int], set[tuple[str, int]]]
    for a, b in itertools.combinations(cands, 2):
        if a.box_id == b.box_id:
            continue
        x, y = sorted((a, b), key=lambda c: c.offline_at)
        offline_then = x.ended_at is None or y.offline_at < x.ended_at
        if x.offline_at == y.offline_at:
            offline_then = offline_then or y.ended_at is None or x.offline_at < y.ended_at
        if (y.offline_at - x.offline_at <= GAP * 1000 and offline_then
                and geo.distance_m((a.lat, a.lng), (b.lat, b.lng)) <= RADIUS):
            edges[a.key].add(b.key)
            edges[b.key].add(a.key)
    seen: set[tuple[str, int]] = set()
    out = set()
    for start in edges:
        if start in seen:
            continue
        comp: set[tuple[str, int]] = set()
        todo = [start]
        while todo:
            node = todo.pop()
            if node not in comp:
                comp.add(node)
                todo.extend(edges[node] - comp)
        seen |= comp
        out.add(frozenset(comp))
    return out


def at(i: int, north_m: float, east_m: float, t_s: int, back_s: int | None = None, version: int = 2) -> Candidate:
    lat = ORIGIN[0] + math.degrees(north_m / geo.EARTH_RADIUS_M)
    lng = ORIGIN[1] + math.degrees(east_m / (geo.EARTH_RADIUS_M * math.cos(math.radians(ORIGIN[0]))))
    return Candidate(f"B{i:02d}", f"box {i}", lat, lng, t_s * 1000, version=version,
                     ended_at=None if back_s is None else back_s * 1000)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 11), st.floats(-1500, 1500), st.floats(-1500, 1500), st.integers(0, 400),
                          st.one_of(st.none(), st.integers(0, 120))),
                min_size=0, max_size=25))
def test_clusters_equal_the_brute_force_closure(points: list[tuple[int, float, float, int, int | None]]) -> None:
    # Given episodes (a box may have several: flaps), each open or ended some seconds after it began
    cands = [at(box, n, e, t, None if back is None else t + back, version=i)
             for i, (box, n, e, t, back) in enumerate(points)]
    got = {frozenset(c.key for c in g) for g in cluster(cands, RADIUS, GAP)}
    assert got == brute_force(cands)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.floats(-900, 900), st.floats(-900, 900), st.integers(0, 130),
                          st.one_of(st.none(), st.integers(0, 90))),
                min_size=30, max_size=90))
def test_dense_clusters_equal_the_brute_force_closure(points: list[tuple[int, float, float, int, int | None]]) -> None:
    # Given many episodes in a few cells (whole cells in one component are compared once)
    cands = [at(box, n, e, t, None if back is None else t + back, version=i)
             for i, (box, n, e, t, back) in enumerate(points)]
    # When clustered, Then the components are the brute force's
    assert {frozenset(c.key for c in g) for g in cluster(cands, RADIUS, GAP)} == brute_force(cands)


def test_a_box_back_before_the_other_dropped_is_not_linked() -> None:
    # A [100, 130), B drops at 130: A was no longer offline; at 129 it was
    assert len(cluster([at(1, 0, 0, 100, back_s=130), at(2, 0, 100, 130)], RADIUS, GAP)) == 2
    assert len(cluster([at(1, 0, 0, 100, back_s=130), at(2, 0, 100, 129)], RADIUS, GAP)) == 1
    # the later one's own end does not matter: it was offline when it dropped
    assert len(cluster([at(1, 0, 0, 100), at(2, 0, 100, 129, back_s=129)], RADIUS, GAP)) == 1


def test_chain_links_boxes_beyond_radius_and_gap_but_not_twice_the_gap() -> None:
    # O1-O2 300 m/30 s, O2-O3 300 m/35 s: O1 and O3 (600 m, 65 s) are one cluster through O2
    chain = [at(1, 0, 0, 100), at(2, 0, 300, 130), at(3, 0, 600, 165)]
    assert [[c.box_id for c in g] for g in cluster(chain, RADIUS, GAP)] == [["B01", "B02", "B03"]]
    pair = [at(1, 0, 0, 100), at(2, 0, 300, 220)]  # 2x the gap apart
    assert len(cluster(pair, RADIUS, GAP)) == 2


def test_episodes_of_one_incident_stay_linked() -> None:
    # linked once (through a bridge no longer in view): held together by their incident
    far = [at(1, 0, 0, 100), at(2, 0, 900, 150)]
    assert len(cluster(far, RADIUS, GAP)) == 2
    assert len(cluster(far, RADIUS, GAP, linked_groups=[[("B01", 2), ("B02", 2), ("GONE", 1)]])) == 1


def test_windows_by_arrival_cover_a_failed_sweep_and_both_late_checks() -> None:
    s = Settings()
    assert evaluate_window_ms(s) == 3 * 60_000  # the last interval and two more
    assert late_checks_ms(s) == (60_000, 240_000)  # a concurrent AlarmIngest, then its retries
    assert arrival_window_ms(s) == 240_000 + 180_000


# -------------------------------------------------------------------- rendering
def box(box_id: str, north: float, east: float) -> BoxItem:
    c = at(0, north, east, 0)
    return BoxItem(box_id, name=f"Shop {box_id}", address="", lat=c.lat, lng=c.lng, timezone="Asia/Shanghai",
                   alarm_cell="x", area_cell="x")


@pytest.mark.parametrize("locale", ["en", "zh-CN"])
def test_both_warnings_render_in_each_locale(locale: str) -> None:
    drop = Drop("N1", 1_767_225_900_000, 2, "CONNECTION_LOST")
    third = offline_after_alarm_notification(box("N1", 0, 0), drop, watched(7, 1_767_225_780_000))
    title, body = third.render(locale)
    assert "Shop N1" in title and "7" in body and "2.0" in body
    group = [at(1, 0, 0, 100), at(2, 0, 300, 130)]
    incident = IncidentItem(*IncidentItem.key("x"), incident_id="x", opened_at=0, updated_at=0,
                            center_lat=ORIGIN[0], center_lng=ORIGIN[1], radius_m=650.0)
    outage = neighbour_outage_notification(box("N9", 200, 0), 200.0, group, incident)
    title, body = outage.render(locale)
    assert "Shop N9" in title and "box 1" in body and "box 2" in body
    data = json.loads(json.loads(outage.message(locale))["GCM"])["data"]["boxwatch"]
    assert json.loads(data)["offline_boxes"] == ["B01", "B02"]


@pytest.mark.parametrize("locale", ["en", "zh-CN"])
def test_a_warning_about_thousands_of_boxes_fits_in_a_push(locale: str) -> None:
    # Given an outage of 10,000 boxes with long names
    group = [at(i, (i // 100) * 150, (i % 100) * 150, 100 + i % 50) for i in range(10_000)]
    for c in group:
        c.name = f"Residential building No. {c.box_id} of the Haidian district power bureau"
    incident = IncidentItem(*IncidentItem.key("x"), incident_id="x", opened_at=0, updated_at=0,
                            center_lat=ORIGIN[0], center_lng=ORIGIN[1], radius_m=650.0)
    # When a neighbour is warned
    note = neighbour_outage_notification(box("N9", -200, 0), 200.0, group, incident)
    message = json.loads(note.message(locale))
    # Then each platform's payload stays within 4 KB, names the nearest and counts them all
    for platform in ("GCM", "APNS"):
        assert len(message[platform].encode()) <= 4096, (platform, len(message[platform].encode()))
    data = json.loads(json.loads(message["GCM"])["data"]["boxwatch"])
    assert data["offline_count"] == 10_000 and len(data["offline_boxes"]) == 30
    assert "B00" in data["offline_boxes"]  # the nearest one
    title, body = note.render(locale)
    assert "10000" in title and ("9995 more" in body or "另外 9995 个" in body)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-1500, 1500), st.floats(-1500, 1500)), min_size=1, max_size=30),
       st.lists(st.tuples(st.floats(-2500, 2500), st.floats(-2500, 2500)), min_size=1, max_size=20))
def test_the_nearest_member_within_the_radius_is_the_brute_force_one(
        members: list[tuple[float, float]], points: list[tuple[float, float]]) -> None:
    # Given a group of offline members and boxes around it
    group = [at(i, n, e, 100) for i, (n, e) in enumerate(members)]
    nearest = nearest_member(group, Settings(outage_radius_m=RADIUS))
    for n, e in points:
        p = at(99, n, e, 0)
        # When a box's nearest member is looked up through the cells covering its radius
        got = nearest(p.lat, p.lng)
        # Then it is the nearest of all members when within the radius, else none
        d = min(geo.distance_m((p.lat, p.lng), (c.lat, c.lng)) for c in group)
        assert got == (d if d <= RADIUS else None)
