"""The operators' API (`/ops`, docs/operator-api.md) against moto: the map reads ~ the boxes in view,
the change feed costs ~ changes, another organisation's box is answered as unknown (and counted),
CSV rows are refused with reasons, an operator's power-off needs the typed box id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from boxwatch import ops
from boxwatch.registry import BoxSpec, import_boxes, register_box
from boxwatch_infra.aws.events import http_api_event, lifecycle_event, scheduled_event
from boxwatch_infra.sandbox import Sandbox

NOW = 1767225630000
ORIGIN = (39.90, 116.30)
STEP = 0.0027  # ~300 m between boxes


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox() as sb:
        # Given a city of 900 boxes of acme on a 30 x 30 grid (~9 km square), and one box of globex
        specs = [BoxSpec(id=f"BX-{r:02d}-{c:02d}", name=f"Block {r}-{c}", lat=ORIGIN[0] + r * STEP,
                         lng=ORIGIN[1] + c * STEP, org="acme") for r in range(30) for c in range(30)]
        list(import_boxes(specs, sb.settings))
        register_box(BoxSpec(id="BX-G", name="Globex HQ", lat=ORIGIN[0], lng=ORIGIN[1], org="globex"), sb.settings)
        sb.create_things(["BX-00-00"])
        yield sb


ACME = ops.Operator("ann", "acme")


def test_the_map_reads_about_the_boxes_in_view(sb: Sandbox) -> None:
    # When ann's viewport covers about 1.5 km x 1.5 km in the middle of the city
    south, west = ORIGIN[0] + 10 * STEP - 0.0001, ORIGIN[1] + 10 * STEP - 0.0001
    north, east = south + 5 * STEP + 0.0002, west + 5 * STEP + 0.0002
    out = ops.boxes_in_view(ACME, f"{south},{west},{north},{east}", 200, None, NOW)
    # Then she gets exactly the 6 x 6 boxes inside it, and the Queries read at most a few times that
    shown = {b["box_id"] for b in out["boxes"]}
    assert shown == {f"BX-{r:02d}-{c:02d}" for r in range(10, 16) for c in range(10, 16)}
    # the cover (runs of fine cells, the view's edge cells) reads < 2x, not the 900 of the fleet
    assert out["read"] <= 2 * len(shown), out["read"]
    assert out["queries"] <= 24
    # and another organisation's operator sees none of them in the same viewport
    assert ops.boxes_in_view(ops.Operator("oscar", "globex"), f"{south},{west},{north},{east}", 200, None,
                             NOW)["boxes"] == []


def test_the_map_pages_through_a_large_view(sb: Sandbox) -> None:
    # When the viewport holds the whole city and pages are 100 boxes
    bbox = f"{ORIGIN[0] - 0.01},{ORIGIN[1] - 0.01},{ORIGIN[0] + 0.09},{ORIGIN[1] + 0.09}"
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        out = ops.boxes_in_view(ACME, bbox, 100, cursor, NOW)
        seen += [b["box_id"] for b in out["boxes"]]
        pages += 1
        cursor = out.get("next_cursor")
        if cursor is None:
            break
    # Then every acme box comes exactly once
    assert len(seen) == len(set(seen)) == 900
    assert pages >= 9


def test_the_change_feed_costs_about_the_changes(sb: Sandbox) -> None:
    # Given a cursor, then three changes of acme and one of globex
    cursor = ops.changes(ACME, None, NOW)["cursor"]
    for i, box in enumerate(["BX-00-01", "BX-00-02", "BX-00-03"]):
        ops.record_change("acme", "box", box, NOW + 100 + i)
    ops.record_change("globex", "box", "BX-G", NOW + 100)
    # When ann polls
    sb.counter.reset()
    with sb.counter.counting():
        out = ops.changes(ACME, cursor, NOW + 2000)
    # Then she gets her three boxes as they are, with one Query and one BatchGetItem
    assert sorted(c["id"] for c in out["changes"]) == ["BX-00-01", "BX-00-02", "BX-00-03"]
    assert all(c["entity"]["state"] == "normal" for c in out["changes"])
    assert sb.counter.operations["dynamodb.Query"] <= 2
    assert sb.counter.operations["dynamodb.BatchGetItem"] == 1
    assert int(out["cursor"]) == NOW + 102
    # and a cursor too old is told to reload instead of replaying the log
    assert ops.changes(ACME, str(NOW - 3_600_000), NOW)["reset"] is True


def call(sb: Sandbox, method: str, path: str, route: str, user: str, org: str, params: dict[str, str] | None = None,
         body: Any = None, headers: dict[str, str] | None = None, query: dict[str, str] | None = None
         ) -> tuple[int, dict[str, Any]]:
    event = http_api_event(method, path, route, user, NOW, params, headers=headers, body=body, query=query)
    if isinstance(body, str):  # a CSV body, as sent
        event["body"] = body
    event["requestContext"]["authorizer"]["jwt"]["claims"].update({"custom:org": org, "cognito:groups": "[operators]"})
    response = sb.invoke("OpsApi", event)
    try:
        doc = json.loads(response["body"] or "{}")
    except ValueError:
        doc = {"text": response["body"]}
    return int(response["statusCode"]), doc


def test_another_orgs_box_is_answered_as_unknown_and_counted(sb: Sandbox, capsys: pytest.CaptureFixture[str],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    route = "GET /ops/boxes/{box_id}"
    # When an operator of globex asks for an acme box, and for a box that does not exist
    cross = call(sb, "GET", "/ops/boxes/BX-00-00", route, "oscar", "globex", {"box_id": "BX-00-00"})
    unknown = call(sb, "GET", "/ops/boxes/BX-NONE", route, "oscar", "globex", {"box_id": "BX-NONE"})
    # Then both answers are the same 404, and the first is logged and counted as cross-org
    assert cross == unknown == (404, {"error": "not_found", "message": "no such box"})
    # (the metric is printed as EMF; the log record is read from logging, as the logger's stream is
    # whichever stdout it first met in this process)
    assert "CrossOrgRefused" in capsys.readouterr().out
    reasons = [getattr(r, "reason", None) for r in caplog.records if r.levelname == "WARNING"]
    assert reasons == ["cross_org", "unknown_box"]
    # while acme's operator reads it
    assert call(sb, "GET", "/ops/boxes/BX-00-00", route, "ann", "acme", {"box_id": "BX-00-00"})[0] == 200


def test_a_user_without_the_operators_group_is_refused(sb: Sandbox) -> None:
    event = http_api_event("GET", "/ops/alarms", "GET /ops/alarms", "alice", NOW, None)
    response = sb.invoke("OpsApi", event)
    assert response["statusCode"] == 403 and json.loads(response["body"])["error"] == "not_operator"


def test_csv_rows_are_refused_with_their_reasons(sb: Sandbox) -> None:
    csv = "\n".join(["id,name,address,lat,lng,timezone,org",
                     "BX-NEW-1,New one,,39.95,116.35,,",
                     "BX-NEW-1,Twice,,39.95,116.35,,",
                     "BX-NEW-2,,,39.95,116.35,,",
                     "BX-NEW-3,Far north,,95,116.35,,",
                     "BX-NEW-4,Nowhere,,39.95,116.35,Mars/Olympus,",
                     "BX-G,Taken,,39.95,116.35,,",
                     "BX-NEW-5,Theirs,,39.95,116.35,,globex"])
    status, out = call(sb, "POST", "/ops/boxes/import", "POST /ops/boxes/import", "ann", "acme", body=csv,
                       headers={"content-type": "text/csv"})
    assert status == 200 and out["imported"] == 1
    reasons = {r["line"]: r["reason"] for r in out["refused"]}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8]
    assert "duplicate of line 2" in reasons[3]
    assert reasons[4].startswith("name")
    assert reasons[5].startswith("lat")
    assert "time zone" in reasons[6]
    assert reasons[7] == "id: in use"  # globex's box: not taken over, not described
    assert reasons[8].startswith("org")


def test_an_operator_power_off_needs_the_typed_box_id(sb: Sandbox) -> None:
    route = "POST /ops/boxes/{box_id}/power-off"
    params = {"box_id": "BX-00-00"}
    key = {"idempotency-key": "ops-test-0001"}
    # When ann asks without typing the box id, then with another id
    assert call(sb, "POST", "/ops/boxes/BX-00-00/power-off", route, "ann", "acme", params, {}, key)[1]["error"] == \
        "confirmation_required"
    assert call(sb, "POST", "/ops/boxes/BX-00-00/power-off", route, "ann", "acme", params, {"confirm": "BX-00-01"},
                key)[0] == 400
    assert (sb.shadow("BX-00-00") or {}).get("state", {}).get("desired") is None
    # Then with the id: a command in the audit, its order in the shadow
    status, cmd = call(sb, "POST", "/ops/boxes/BX-00-00/power-off", route, "ann", "acme", params,
                       {"confirm": "BX-00-00"}, key)
    assert status == 201 and cmd["requested_by_role"] == "operator" and cmd["status"] == "pending"
    assert (sb.shadow("BX-00-00") or {})["state"]["desired"]["command_id"] == cmd["command_id"]
    audit = ops.commands(ACME, "BX-00-00", 10, None)["commands"]
    assert [c["command_id"] for c in audit] == [cmd["command_id"]]
    # and globex cannot, even typing the id
    assert call(sb, "POST", "/ops/boxes/BX-00-00/power-off", route, "oscar", "globex", params,
                {"confirm": "BX-00-00"}, {"idempotency-key": "ops-test-0002"})[0] == 404


def test_an_alarm_and_its_repeat_reach_the_change_feed_in_the_alarms_transaction(sb: Sandbox) -> None:
    # Given a cursor before BX-00-05 raises an overtemp alarm and repeats it 10 s later
    t0 = NOW + 50_000
    cursor = ops.changes(ACME, None, t0 - 1)["cursor"]
    for seq in (1, 2):
        payload = {"v": 1, "seq": seq, "cause": "overtemp", "value": 90 + seq, "threshold": 85,
                   "alarm_time": t0 + 10_000 * (seq - 1)}
        [delivery] = sb.publish_mqtt("boxwatch/boxes/BX-00-05/alarms", payload, client_id="BX-00-05",
                                     now_ms=t0 + 10_000 * (seq - 1))
        assert delivery.error is None
    # When ann polls
    out = ops.changes(ACME, cursor, t0 + 12_000)
    # Then both alarm rows show the one alarm as it is now (the repeat's row is read back: count 2),
    # and the organisation's alarm list holds it once
    rows = [c for c in out["changes"] if c["type"] == "alarm"]
    assert len(rows) == 2 and {c["entity"]["alarm_id"] for c in rows} == {rows[0]["entity"]["alarm_id"]}
    assert rows[-1]["entity"]["count"] == 2 and rows[-1]["entity"]["state"] == "active"
    listed = ops.alarms(ACME, "active", None, None, None, 50, None, t0 + 12_000)["alarms"]
    assert [(a["box_id"], a["count"]) for a in listed] == [("BX-00-05", 2)]


def test_a_third_alarm_is_in_the_organisations_alarm_list(sb: Sandbox) -> None:
    # Given BX-00-07 raised an alarm and dropped off the network 60 s after it was received
    t0 = NOW + 100_000
    payload = {"v": 1, "seq": 1, "cause": "residual_current", "value": 400, "threshold": 300, "alarm_time": t0}
    sb.publish_mqtt("boxwatch/boxes/BX-00-07/alarms", payload, client_id="BX-00-07", now_ms=t0)
    doc = lifecycle_event("BX-00-07", "disconnected", t0 + 60_000, 2, 1, "CONNECTION_LOST")
    [delivery] = sb.publish_mqtt("$aws/events/presence/disconnected/BX-00-07", doc, "", t0 + 60_000)
    assert delivery.error is None
    # When ann lists the active alarms / Then the box's alarm and its offline-after-alarm are both there
    listed = ops.alarms(ACME, "active", None, None, None, 50, None, t0 + 70_000)["alarms"]
    causes = sorted(a["cause"] for a in listed if a["box_id"] == "BX-00-07")
    assert causes == ["offline_after_alarm", "residual_current"]


def documents(version: int, before: str | None, now: str, at_s: int) -> dict[str, Any]:
    """A shadow update/documents event of BX-00-09 (as CommandAckRule delivers it)."""
    prev = None if before is None else {"state": {"reported": {"power": "on", "contactor": before}},
                                        "version": version - 1}
    return {"thing": "BX-00-09", "previous": prev, "timestamp": at_s,
            "current": {"state": {"reported": {"power": "on" if now == "closed" else "off", "contactor": now}},
                        "version": version}}


def test_the_map_shows_the_contactor_as_the_box_reported_it_last(sb: Sandbox) -> None:
    route = "GET /ops/boxes/{box_id}"
    t_s = (NOW + 200_000) // 1000
    cursor = ops.changes(ACME, None, t_s * 1000 - 1)["cursor"]
    # Given BX-00-09 reported its contactor closed (shadow v1), then open (v3, opened by hand)
    sb.invoke("CommandAck", documents(1, None, "closed", t_s))
    sb.invoke("CommandAck", documents(3, "closed", "open", t_s + 2))
    # When the report of v2 (closed) arrives late, and a report that changes something else comes
    sb.invoke("CommandAck", documents(2, "closed", "closed", t_s + 1))
    sb.invoke("CommandAck", documents(2, None, "closed", t_s + 1))
    # Then the box shows its latest contactor state, and the console's feed has the box
    status, box = call(sb, "GET", "/ops/boxes/BX-00-09", route, "ann", "acme", {"box_id": "BX-00-09"})
    assert status == 200 and box["contactor"] == "open"
    out = ops.changes(ACME, cursor, t_s * 1000 + 3000)
    assert {c["id"] for c in out["changes"] if c["type"] == "box"} == {"BX-00-09"}


def test_an_open_incident_is_listed_with_its_kind_and_members(sb: Sandbox) -> None:
    # Given two adjacent acme boxes (300 m apart) drop off the network 20 s apart
    t0 = NOW + 300_000
    for i, box in enumerate(["BX-20-20", "BX-20-21"]):
        at = t0 + 20_000 * i
        doc = lifecycle_event(box, "disconnected", at, 2, 1, "CONNECTION_LOST")
        [delivery] = sb.publish_mqtt(f"$aws/events/presence/disconnected/{box}", doc, "", at)
        assert delivery.error is None
    # When the sweep runs a minute later
    sb.invoke("OfflineSweep", scheduled_event(t0 + 60_000, "123456789012", "us-east-1", "e-1", []))
    # Then ann sees one open fourth-alarm incident of those two boxes; globex's operator sees none
    [inc] = [i for i in ops.incidents(ACME, "open", 50)["incidents"] if "BX-20-20" in i["members"]]
    assert inc["kind"] == "neighbour_outage" and inc["members"] == ["BX-20-20", "BX-20-21"]
    assert inc["area"]["radius_m"] > 0 and inc["resolved_at"] is None
    assert ops.incidents(ops.Operator("oscar", "globex"), "open", 50)["incidents"] == []
    # When both come back and the sweep runs again
    for i, box in enumerate(["BX-20-20", "BX-20-21"]):
        at = t0 + 90_000 + 1000 * i
        doc = lifecycle_event(box, "connected", at, 3, 2)
        [delivery] = sb.publish_mqtt(f"$aws/events/presence/connected/{box}", doc, "", at)
        assert delivery.error is None
    sb.invoke("OfflineSweep", scheduled_event(t0 + 120_000, "123456789012", "us-east-1", "e-2", []))
    # Then it is no longer open but listed as resolved (when the last box came back), for acme only
    assert [i for i in ops.incidents(ACME, "open", 50)["incidents"] if "BX-20-20" in i["members"]] == []
    [done] = ops.incidents(ACME, "resolved", 50, None, t0 + 130_000)["incidents"]
    assert done["incident_id"] == inc["incident_id"] and done["state"] == "resolved"
    assert done["resolved_at"] == t0 + 91_000 and done["members"] == ["BX-20-20", "BX-20-21"]
    assert ops.incidents(ops.Operator("oscar", "globex"), "resolved", 50, None, t0 + 130_000)["incidents"] == []
