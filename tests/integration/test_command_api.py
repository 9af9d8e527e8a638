"""CommandApi and CommandAck with the real-shaped events of events/ (HTTP API v2, shadow documents)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from boxwatch.registry import BindingSpec, BoxSpec, bind, register_box
from boxwatch_infra.sandbox import Sandbox

EVENTS = Path(__file__).parents[2] / "events"


def load(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    # Given BX-1 bound to alice and bob, BX-2 bound to bob only (as in events/seed.yaml)
    with Sandbox() as sb:
        sb.create_things(["BX-1", "BX-2"])
        register_box(BoxSpec(id="BX-1", name="No.3 building", lat=39.98, lng=116.31), sb.settings)
        register_box(BoxSpec(id="BX-2", name="No.5 building", lat=39.988, lng=116.31), sb.settings)
        endpoints = sb.create_push_endpoints(["alice", "bob"])
        for client, box in [("alice", "BX-1"), ("bob", "BX-1"), ("bob", "BX-2")]:
            bind(BindingSpec(client_id=client, box_id=box, target=endpoints[client], locale="en"))
        yield sb


def call(sb: Sandbox, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = sb.invoke("CommandApi", event)
    return int(response["statusCode"]), json.loads(response["body"] or "{}")


def test_power_off_then_ack_then_read_the_command(sb: Sandbox) -> None:
    # When alice posts the power-off event
    status, body = call(sb, load("api_power_off.json"))
    # Then a pending command is created and written into BX-1's desired state with its expiry
    assert status == 201 and body["status"] == "pending" and body["box_id"] == "BX-1"
    assert body["command_id"] == load("api_get_command.json")["pathParameters"]["command_id"]
    desired = sb.shadow("BX-1")["state"]["desired"]  # type: ignore[index]
    assert desired == {"power": "off", "command_id": body["command_id"], "expires_at": body["expires_at"]}
    assert body["expires_at"] - body["requested_at"] == sb.settings.command_expiry_s * 1000
    # When the box's documents message arrives / Then the command is settled and desired cleared
    ack = sb.invoke("CommandAck", load("shadow_documents_ack.json"))
    assert ack["status"] == "succeeded" and ack["notified"] == 1
    # a redelivery of the same documents changes nothing
    assert sb.invoke("CommandAck", load("shadow_documents_ack.json"))["status"] == "duplicate"
    status, cmd = call(sb, load("api_get_command.json"))
    assert status == 200 and cmd["status"] == "succeeded" and cmd["client_id"] == "alice"


def test_unbound_client_gets_403_and_nothing_is_written(sb: Sandbox) -> None:
    status, body = call(sb, load("api_power_off_unbound.json"))
    assert status == 403 and body["error"] == "forbidden"
    assert sb.shadow("BX-2") is None


def test_unknown_box_is_refused_like_an_unbound_one(sb: Sandbox) -> None:
    event = load("api_power_off.json")
    event["pathParameters"] = {"box_id": "BX-404"}
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/boxes/BX-404/power-off"
    assert call(sb, event)[0] == 403


def test_bad_requests_get_clear_4xx(sb: Sandbox) -> None:
    no_key = load("api_power_off.json")
    del no_key["headers"]["idempotency-key"]
    status, body = call(sb, no_key)
    assert status == 400 and "Idempotency-Key" in body["message"]
    anonymous = load("api_power_off.json")
    anonymous["requestContext"]["authorizer"] = {"jwt": {"claims": {}, "scopes": None}}
    assert call(sb, anonymous)[0] == 401
    bad_limit = load("api_box_alarms.json")
    bad_limit["queryStringParameters"] = {"limit": "5000"}
    assert call(sb, bad_limit)[0] == 400


def retarget(event: dict[str, Any], box: str, client: str) -> dict[str, Any]:
    event = copy.deepcopy(event)
    event["pathParameters"] = {"box_id": box}
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/boxes/{box}/power-off"
    event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = client
    return event


def test_same_key_for_another_box_is_a_conflict(sb: Sandbox) -> None:
    # Given bob used a key for BX-1 / When he reuses it for BX-2 / Then 409, and BX-2 gets no order
    assert call(sb, retarget(load("api_power_off.json"), "BX-1", "bob"))[0] == 201
    status, body = call(sb, retarget(load("api_power_off.json"), "BX-2", "bob"))
    assert status == 409 and body["error"] == "conflict"
    assert sb.shadow("BX-2") is None

def test_me_boxes_and_box_alarms(sb: Sandbox) -> None:
    status, me = call(sb, load("api_me_boxes.json"))
    assert status == 200 and sorted(b["box_id"] for b in me["boxes"]) == ["BX-1", "BX-2"]
    assert all(b["online"] for b in me["boxes"])
    status, alarms = call(sb, load("api_box_alarms.json"))
    assert status == 200 and alarms == {"box_id": "BX-1", "name": "No.3 building", "alarms": []}
