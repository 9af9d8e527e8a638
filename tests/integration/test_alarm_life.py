"""The alarm's life with the real handlers (moto): one alarm under a race, the ack API's answers,
the escalation chain's due items (docs/alarm-life.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from boxwatch import alarms
from boxwatch.bindings import bindings_of_box
from boxwatch.events import AlarmEvent
from boxwatch.models import AlarmLifeItem, BoxItem, DueItem
from boxwatch_infra.aws.events import http_api_event
from boxwatch_infra.sandbox import Sandbox, decode_push
from tests.integration.faultkit import T0, AlarmWorld, alarm_world


@pytest.fixture
def world() -> Iterator[AlarmWorld]:
    with Sandbox() as sb:
        yield alarm_world(sb)


def api(world: AlarmWorld, method: str, path: str, route: str, client: str, params: dict[str, str] | None,
        body: Any = None, query: dict[str, str] | None = None, t_s: float = 60.0) -> tuple[int, dict[str, Any]]:
    response = world.sb.invoke("CommandApi", http_api_event(method, path, route, client, T0 + round(t_s * 1000),
                                                            params, body=body, query=query))
    return int(response["statusCode"]), json.loads(response.get("body") or "{}")


def ack(world: AlarmWorld, client: str, alarm_id: str, body: Any, t_s: float = 60.0) -> tuple[int, dict[str, Any]]:
    return api(world, "POST", f"/boxes/BX-1/alarms/{alarm_id}/ack", "/boxes/{box_id}/alarms/{alarm_id}/ack", client,
               {"box_id": "BX-1", "alarm_id": alarm_id}, body=body, t_s=t_s)


def told(world: AlarmWorld, kind: str) -> list[str]:
    """The clients a push of `kind` went to, once per push, sorted."""
    by_arn = {arn: cid for cid, arn in world.endpoints.items()}
    return sorted(by_arn[arn] for arn, messages in world.sb.pushed_messages().items() for m in messages
                  if decode_push(m)["kind"] == kind)


def lives() -> list[AlarmLifeItem]:
    return list(AlarmLifeItem.query("BOX#BX-1", AlarmLifeItem.sk.startswith("LIFE#")))


def test_two_alarms_racing_on_a_stale_box_make_one_alarm(world: AlarmWorld) -> None:
    # Given two deliveries of BX-1 that both read the box before either stored (a race)
    stale = BoxItem.get("BX-1", consistent_read=True)
    first = AlarmEvent.model_validate({"thing": "BX-1", "received_at": T0, "seq": 1, "cause": "overtemp",
                                       "alarm_time": T0, "value": 92.5, "threshold": 85})
    second = first.model_copy(update={"seq": 2, "received_at": T0 + 5})
    bindings = bindings_of_box("BX-1")
    alarms._store(first, stale, bindings, world.sb.settings)
    # When the second stores from the stale box / Then its transaction loses, re-reads and joins
    stored = alarms._store(second, stale, bindings, world.sb.settings)
    [life] = lives()
    assert (stored.opened, stored.alarm_id, int(life.logs), int(life.last_at)) == (False, life.alarm_id, 2, T0 + 5)
    # and the box's active map names that one alarm, with one escalation chain
    assert BoxItem.get("BX-1").active == {"overtemp#": life.alarm_id}
    assert [d.kind for d in DueItem.scan() if d.kind in ("reminder", "escalation")] in (
        ["reminder", "escalation"], ["escalation", "reminder"])


def test_the_ack_api_answers_like_the_other_routes(world: AlarmWorld) -> None:
    # Given BX-1's alarm (clients c0..c2) and c9, bound to BX-2 only
    world.alarm(seq=1, t_s=0)
    [life] = lives()
    # Then an unbound client hears "no such box", as for an unknown box
    assert ack(world, "c9", life.alarm_id, {"disposition": "real"})[0] == 404
    # and a bound one is refused a disposition not in the list and a comment over 500 characters
    assert ack(world, "c0", life.alarm_id, {"disposition": "fire"})[0] == 400
    assert ack(world, "c0", life.alarm_id, {"disposition": "real", "comment": "x" * 501})[0] == 400
    assert ack(world, "c0", "1767225600000.99", {"disposition": "real"})[0] == 404
    # When c0 acknowledges it as a drill / Then 200, the others (c1, c2) are told once
    status, body = ack(world, "c0", life.alarm_id, {"disposition": "drill", "comment": "monthly drill"})
    assert (status, body["changed"], body["alarm"]["acked_by"], body["alarm"]["disposition"]) == (
        200, True, "c0", "drill")
    assert told(world, "acknowledged") == ["c1", "c2"]
    # and a second ack (another client, another disposition) changes nothing and tells nobody
    status, body = ack(world, "c1", life.alarm_id, {"disposition": "real"}, t_s=70)
    assert (status, body["changed"], body["alarm"]["disposition"], body["alarm"]["acked_at"]) == (
        200, False, "drill", T0 + 60_000)
    assert told(world, "acknowledged") == ["c1", "c2"]
    # and the chain left the due index
    assert not [d for d in DueItem.scan() if d.kind in ("reminder", "escalation") and d.due]


def test_my_alarms_lists_the_active_alarms_of_my_boxes(world: AlarmWorld) -> None:
    # Given an alarm of BX-1 and one of BX-2
    world.alarm(seq=1, t_s=0)
    world.alarm(box="BX-2", seq=1, t_s=1)
    # When c0 (BX-1) and c9 (BX-2) ask / Then each sees their box's alarm only
    for client, box in (("c0", "BX-1"), ("c9", "BX-2")):
        status, body = api(world, "GET", "/me/alarms", "/me/alarms", client, None, query={"state": "active"})
        assert status == 200
        assert [(a["box_id"], a["cause"], a["state"], a["acked"]) for a in body["alarms"]] == [
            (box, "overtemp", "active", False)]
    # and the box's list with state=all has the lifecycle fields
    status, body = api(world, "GET", "/boxes/BX-1/alarms", "/boxes/{box_id}/alarms", "c0", {"box_id": "BX-1"},
                       query={"state": "all"})
    assert status == 200 and body["alarms"][0]["count"] == 1 and body["alarms"][0]["escalation_steps"] == []
