"""CommandApi, CommandAck and CommandExpiry with the real-shaped events of events/ (HTTP API v2 with
Cognito JWT claims, shadow update/documents, EventBridge schedule), against moto's shadows."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from boxwatch.registry import BindingSpec, BoxSpec, bind, register_box
from boxwatch_infra.sandbox import Sandbox, decode_push
from tests.integration.faultkit import Crash, injected

EVENTS = Path(__file__).parents[2] / "events"
REQUESTED_AT = 1767225630000  # timeEpoch of events/api_power_off.json


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
        sb.endpoint_client = {arn: client for client, arn in endpoints.items()}  # type: ignore[attr-defined]
        for client, box in [("alice", "BX-1"), ("bob", "BX-1"), ("bob", "BX-2")]:
            bind(BindingSpec(client_id=client, box_id=box, target=endpoints[client], locale="en"))
        yield sb


def call(sb: Sandbox, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = sb.invoke("CommandApi", event)
    return int(response["statusCode"]), json.loads(response["body"] or "{}")


def pushes(sb: Sandbox) -> list[dict[str, Any]]:
    """Every push so far as {client, **data}."""
    names: dict[str, str] = sb.endpoint_client  # type: ignore[attr-defined]
    return [{"client": names[arn], **decode_push(m)} for arn, ms in sb.pushed_messages().items() for m in ms]


def dead_letters(sb: Sandbox) -> list[dict[str, Any]]:
    got = sb.client("sqs").receive_message(QueueUrl=sb.queues["RejectedInputQueue"], MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in got.get("Messages", [])]


def retarget(event: dict[str, Any], box: str, client: str) -> dict[str, Any]:
    event = copy.deepcopy(event)
    event["pathParameters"] = {"box_id": box}
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/boxes/{box}/power-off"
    event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = client
    return event


def box_report(command_id: str, **reported: Any) -> dict[str, Any]:
    return {"state": {"reported": {"command_id": command_id, **reported}}}


def schedule_at(ms: int) -> dict[str, Any]:
    from datetime import UTC, datetime

    return {"version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "123456789012",
            "time": datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/boxwatch-CommandExpiry"], "detail": {}}


# ------------------------------------------------------------------------------------------ request
def test_power_off_then_ack_then_read_the_command(sb: Sandbox) -> None:
    # When alice posts the power-off event
    status, body = call(sb, load("api_power_off.json"))
    # Then a pending command is created and written into BX-1's desired state with its expiry
    assert status == 201 and body["status"] == "pending" and body["box_id"] == "BX-1"
    assert body["command_id"] == load("api_get_command.json")["pathParameters"]["command_id"]
    desired = sb.shadow("BX-1")["state"]["desired"]  # type: ignore[index]
    assert desired == {"power": "off", "command_id": body["command_id"], "expires_at": body["expires_at"]}
    assert body["requested_at"] == REQUESTED_AT  # event time, not the wall clock
    assert body["expires_at"] - body["requested_at"] == sb.settings.command_expiry_s * 1000
    # When the box's documents message arrives / Then the command is settled and desired cleared
    ack = sb.invoke("CommandAck", load("shadow_documents_ack.json"))
    assert ack["status"] == "succeeded" and ack["notified"] == 1
    assert "desired" not in sb.shadow("BX-1")["state"]  # type: ignore[index]
    # and only alice (not bob, also bound to BX-1) hears it, with the fields the app reads
    [note] = [p for p in pushes(sb) if p["kind"] == "power_off_result"]
    assert note["client"] == "alice" and note["box"] == "BX-1"
    assert (note["status"], note["command_id"]) == ("succeeded", body["command_id"])
    # a redelivery of the same documents changes nothing
    assert sb.invoke("CommandAck", load("shadow_documents_ack.json"))["status"] == "duplicate"
    assert len([p for p in pushes(sb) if p["kind"] == "power_off_result"]) == 1
    # and the audit record answers GET .../commands/{id}
    status, cmd = call(sb, load("api_get_command.json"))
    assert status == 200 and cmd["status"] == "succeeded" and cmd["client_id"] == "alice"
    assert cmd["settled_at"] == load("shadow_documents_ack.json")["timestamp"] * 1000
    assert cmd["requested_at"] == REQUESTED_AT and cmd["box_id"] == "BX-1" and cmd["reason"] is None


def test_command_records_the_alarm_it_answered(sb: Sandbox) -> None:
    # Given BX-1 raised alarms 1 and 2 before the request
    for seq in (1, 2):
        sb.publish_mqtt("boxwatch/boxes/BX-1/alarms", {"v": 1, "seq": seq, "cause": "overtemp", "value": 90 + seq,
                                                        "threshold": 80, "alarm_time": REQUESTED_AT - 60_000 + seq},
                        client_id="BX-1", now_ms=REQUESTED_AT - 50_000)
    # When alice powers it off / Then the command names the latest alarm
    status, body = call(sb, load("api_power_off.json"))
    assert status == 201 and body["alarm"]["seq"] == 2 and body["alarm"]["cause"] == "overtemp"


def test_same_key_twice_is_one_command(sb: Sandbox) -> None:
    # Given alice's request was created / When the phone retries it with the same key
    first_status, first = call(sb, load("api_power_off.json"))
    version = sb.shadow("BX-1")["version"]  # type: ignore[index]
    again_status, again = call(sb, load("api_power_off.json"))
    # Then 200 with the original command, and no second order reaches the shadow
    assert (first_status, again_status) == (201, 200)
    assert again == first
    assert sb.shadow("BX-1")["version"] == version  # type: ignore[index]


def test_repeat_finishes_a_request_that_died_before_writing_the_order(sb: Sandbox) -> None:
    # Given the first attempt recorded the command and died before the shadow write (phone saw a 5xx)
    with injected(sb) as faults:
        faults.crash("iot-data", "UpdateThingShadow")
        with pytest.raises(Crash):
            call(sb, load("api_power_off.json"))
    assert sb.shadow("BX-1") is None
    # When the phone repeats it with the same key / Then the same command, and now the order is there
    status, body = call(sb, load("api_power_off.json"))
    assert status == 200 and body["status"] == "pending"
    assert sb.shadow("BX-1")["state"]["desired"]["command_id"] == body["command_id"]  # type: ignore[index]


def test_unbound_client_gets_404_and_nothing_is_written(sb: Sandbox) -> None:
    # an unbound client hears what an unknown box answers (test_security_doors: same body)
    status, body = call(sb, load("api_power_off_unbound.json"))
    assert status == 404 and body["error"] == "not_found"
    assert sb.shadow("BX-2") is None
    # reading someone else's box is refused too
    event = load("api_box_alarms.json")
    event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = "mallory"
    assert call(sb, event)[0] == 404


def test_unknown_box_is_404(sb: Sandbox) -> None:
    status, body = call(sb, retarget(load("api_power_off.json"), "BX-404", "alice"))
    assert status == 404 and body["error"] == "not_found"


def test_bad_requests_get_clear_4xx(sb: Sandbox) -> None:
    no_key = load("api_power_off.json")
    del no_key["headers"]["idempotency-key"]
    status, body = call(sb, no_key)
    assert status == 400 and body["error"] == "invalid_input" and "Idempotency-Key" in body["message"]
    anonymous = load("api_power_off.json")
    anonymous["requestContext"]["authorizer"] = {"jwt": {"claims": {}, "scopes": None}}
    assert call(sb, anonymous)[0] == 401
    bad_limit = load("api_box_alarms.json")
    bad_limit["queryStringParameters"] = {"limit": "5000"}
    assert call(sb, bad_limit)[0] == 400
    bad_box = retarget(load("api_power_off.json"), "B" * 200, "alice")  # longer than a thing name
    assert call(sb, bad_box)[0] == 400
    bad_command = load("api_get_command.json")
    bad_command["pathParameters"]["command_id"] = "x" * 3000  # longer than any DynamoDB key
    assert call(sb, bad_command)[0] == 404
    assert sb.shadow("BX-1") is None  # none of them wrote an order


def test_same_key_for_another_box_is_a_conflict(sb: Sandbox) -> None:
    # Given bob used a key for BX-1 / When he reuses it for BX-2 / Then 409, and BX-2 gets no order
    assert call(sb, retarget(load("api_power_off.json"), "BX-1", "bob"))[0] == 201
    status, body = call(sb, retarget(load("api_power_off.json"), "BX-2", "bob"))
    assert status == 409 and body["error"] == "conflict"
    assert sb.shadow("BX-2") is None


def test_order_written_with_the_version_survives_a_concurrent_box_report(sb: Sandbox) -> None:
    # Given BX-1 has a shadow, and the box reports between our read and our write
    sb.device_shadow_update("BX-1", {"state": {"reported": {"power": "on", "contactor": "closed"}}})
    raced: list[bool] = []
    orders: list[dict[str, Any]] = []  # every UpdateThingShadow the API attempted

    def box_reports_meanwhile(service: str, operation: str, params: dict[str, Any], go: Callable[[], Any]) -> Any:
        if operation == "UpdateThingShadow" and b"desired" in params["payload"]:
            orders.append(json.loads(params["payload"]))
        result = go()
        if (service, operation) == ("iot-data", "GetThingShadow") and not raced:
            raced.append(True)
            sb.client("iot-data").update_thing_shadow(
                thingName="BX-1", payload=json.dumps({"state": {"reported": {"rssi": -71}}}).encode())
        return result

    sb.counter.interceptors.insert(0, box_reports_meanwhile)
    # When alice's order is written
    status, body = call(sb, load("api_power_off.json"))
    # Then the stale version was refused (409), re-read and retried once: order and report both kept
    assert raced and status == 201 and body["status"] == "pending"
    state = sb.shadow("BX-1")["state"]  # type: ignore[index]
    assert state["desired"]["command_id"] == body["command_id"] and state["reported"]["rssi"] == -71
    assert [o["version"] for o in orders] == [1, 2]


# ------------------------------------------------------------------------------------------ settle
def test_box_refusal_settles_as_refused_with_its_reason(sb: Sandbox) -> None:
    _, body = call(sb, load("api_power_off.json"))
    sb.now_ms = REQUESTED_AT + 5000
    # When BX-1 refuses the order (its clock says it has expired)
    sb.device_shadow_update("BX-1", box_report(body["command_id"], command_status="refused", reason="expired",
                                               power="on", contactor="closed"))
    # Then the command is refused with the box's reason, the order is gone, alice is told
    _, cmd = call(sb, load("api_get_command.json"))
    assert (cmd["status"], cmd["reason"], cmd["settled_at"]) == ("refused", "expired", REQUESTED_AT + 5000)
    assert "desired" not in sb.shadow("BX-1")["state"]  # type: ignore[index]
    [note] = [p for p in pushes(sb) if p["kind"] == "power_off_result"]
    assert (note["client"], note["status"], note["reason"]) == ("alice", "refused", "expired")


def test_contactor_failure_settles_as_failed(sb: Sandbox) -> None:
    _, body = call(sb, load("api_power_off.json"))
    sb.device_shadow_update("BX-1", box_report(body["command_id"], command_status="failed", reason="welded contacts",
                                               power="on", contactor="closed"))
    _, cmd = call(sb, load("api_get_command.json"))
    assert (cmd["status"], cmd["reason"]) == ("failed", "welded contacts")
    assert cmd["alarm"] is None  # BX-1 had no alarm when alice asked


def test_documents_that_settle_nothing_are_ignored(sb: Sandbox) -> None:
    call(sb, load("api_power_off.json"))  # its own desired-only documents message reached CommandAck
    desired_only = load("shadow_documents_ack.json")
    desired_only["current"]["state"]["reported"] = desired_only["previous"]["state"]["reported"]
    assert sb.invoke("CommandAck", desired_only)["status"] == "ignored"
    unknown = load("shadow_documents_ack.json")
    unknown["current"]["state"]["reported"]["command_id"] = "c-00000000000000000000"
    assert sb.invoke("CommandAck", unknown)["status"] == "ignored"
    _, cmd = call(sb, load("api_get_command.json"))
    assert cmd["status"] == "pending" and sb.shadow("BX-1")["state"]["desired"]["power"] == "off"  # type: ignore[index]


def test_a_box_cannot_settle_another_boxs_command(sb: Sandbox) -> None:
    call(sb, load("api_power_off.json"))
    forged = load("shadow_documents_ack.json")
    forged["thing"] = "BX-2"
    # When BX-2's documents name BX-1's command / Then refused and dead-lettered, the command untouched
    result = sb.invoke("CommandAck", forged)
    assert result["status"] == "rejected" and result["error"] == "spoofed"
    assert [d["error"]["error"] for d in dead_letters(sb)] == ["spoofed"]
    assert call(sb, load("api_get_command.json"))[1]["status"] == "pending"


def test_malformed_documents_are_rejected_not_crashed(sb: Sandbox) -> None:
    result = sb.invoke("CommandAck", {"thing": "BX-1", "current": "not an object"})
    assert result["status"] == "rejected" and result["error"] == "invalid_input"
    assert len(dead_letters(sb)) == 1


@pytest.mark.parametrize("step", [("iot-data", "UpdateThingShadow"), ("dynamodb", "UpdateItem")],
                         ids=["clearing the order", "settling"])
def test_crash_while_settling_is_finished_by_the_retry(sb: Sandbox, step: tuple[str, str]) -> None:
    call(sb, load("api_power_off.json"))
    # Given CommandAck dies while clearing the order, or after clearing it and before settling
    with injected(sb) as faults:
        faults.crash(*step)
        with pytest.raises(Crash):
            sb.invoke("CommandAck", load("shadow_documents_ack.json"))
    # When Lambda retries the same documents / Then the command settles and alice hears it once
    assert sb.invoke("CommandAck", load("shadow_documents_ack.json"))["status"] == "succeeded"
    assert [p["status"] for p in pushes(sb) if p["kind"] == "power_off_result"] == ["succeeded"]
    assert "desired" not in sb.shadow("BX-1")["state"]  # type: ignore[index]


@pytest.mark.parametrize("fault", ["crash", "push failed"])
def test_result_push_lost_after_settling_is_sent_by_the_expiry_sweep(sb: Sandbox, fault: str) -> None:
    _, body = call(sb, load("api_power_off.json"))
    settled_at = load("shadow_documents_ack.json")["timestamp"] * 1000
    # Given CommandAck settles the command, then dies before the push, or SNS refuses the push
    with injected(sb) as faults:
        if fault == "crash":
            faults.crash("sns", "Publish")
            with pytest.raises(Crash):
                sb.invoke("CommandAck", load("shadow_documents_ack.json"))
        else:
            faults.client_error("sns", "Publish", "InternalError", status=500)
            assert sb.invoke("CommandAck", load("shadow_documents_ack.json"))["notified"] == 0
    # and Lambda's retry finds it settled: no push from there
    assert sb.invoke("CommandAck", load("shadow_documents_ack.json"))["status"] == "duplicate"
    assert not [p for p in pushes(sb) if p["kind"] == "power_off_result"]
    # When the expiry sweep runs past its expiry (and a minute after the settle)
    at = max(body["expires_at"], settled_at + 60_000) + 1000
    assert sb.invoke("CommandExpiry", schedule_at(at))["expired"] == []
    # Then alice is told the result once, and later sweeps say nothing more
    assert [(p["client"], p["status"]) for p in pushes(sb) if p["kind"] == "power_off_result"] == [
        ("alice", "succeeded")]
    sb.invoke("CommandExpiry", schedule_at(at + 60_000))
    assert len([p for p in pushes(sb) if p["kind"] == "power_off_result"]) == 1
    assert call(sb, load("api_get_command.json"))[1]["status"] == "succeeded"


# ------------------------------------------------------------------------------------------ expiry
def test_unconfirmed_command_expires_in_event_time(sb: Sandbox) -> None:
    _, body = call(sb, load("api_power_off.json"))
    # a sweep before expires_at leaves it alone
    assert sb.invoke("CommandExpiry", schedule_at(body["expires_at"] - 1000))["expired"] == []
    # When the sweep runs after expires_at / Then expired, the order leaves desired, alice is told
    assert sb.invoke("CommandExpiry", schedule_at(body["expires_at"] + 30_000))["expired"] == [body["command_id"]]
    assert "desired" not in sb.shadow("BX-1")["state"]  # type: ignore[index]
    [note] = [p for p in pushes(sb) if p["kind"] == "power_off_result"]
    assert (note["client"], note["status"]) == ("alice", "expired")
    # and the next sweep has nothing to do
    assert sb.invoke("CommandExpiry", schedule_at(body["expires_at"] + 90_000))["expired"] == []
    assert len([p for p in pushes(sb) if p["kind"] == "power_off_result"]) == 1


def test_late_done_after_expiry_settles_succeeded_with_both_times(sb: Sandbox) -> None:
    # Given alice's command expired at the sweep
    _, body = call(sb, load("api_power_off.json"))
    expired_at = body["expires_at"] + 30_000
    assert sb.invoke("CommandExpiry", schedule_at(expired_at))["expired"] == [body["command_id"]]
    # When the box, which did open its contactor, reports done afterwards (and the report is redelivered)
    sb.now_ms = expired_at + 50_000
    sb.device_shadow_update("BX-1", box_report(body["command_id"], command_status="done", contactor="open"))
    again = load("shadow_documents_ack.json")
    again["timestamp"] = sb.now_ms // 1000
    assert sb.invoke("CommandAck", again)["status"] == "duplicate"
    # Then the box's report is the truth: succeeded, late, with both times in the audit record
    _, cmd = call(sb, load("api_get_command.json"))
    assert (cmd["status"], cmd["late"], cmd["expired_at"], cmd["settled_at"]) == (
        "succeeded", True, expired_at, expired_at + 50_000)
    # and alice is told twice in all: expired, then succeeded; later sweeps add nothing
    assert [p["status"] for p in pushes(sb) if p["kind"] == "power_off_result"] == ["expired", "succeeded"]
    sb.invoke("CommandExpiry", schedule_at(expired_at + 300_000))
    assert len([p for p in pushes(sb) if p["kind"] == "power_off_result"]) == 2


@pytest.mark.parametrize("outcome", ["failed", "refused"])
def test_late_failure_after_expiry_is_recorded_only(sb: Sandbox, outcome: str) -> None:
    _, body = call(sb, load("api_power_off.json"))
    sb.invoke("CommandExpiry", schedule_at(body["expires_at"] + 30_000))
    # When the box reports a failure after the expiry
    sb.device_shadow_update("BX-1", box_report(body["command_id"], command_status=outcome, reason="busy",
                                               contactor="closed"))
    # Then the command stays expired, the report is in the audit record, nobody is told again
    _, cmd = call(sb, load("api_get_command.json"))
    assert cmd["status"] == "expired" and cmd["late_report"]["command_status"] == outcome
    assert [p["status"] for p in pushes(sb) if p["kind"] == "power_off_result"] == ["expired"]


class ShadowRace:
    """The box changes its shadow right after each of our reads, `times` times (version conflicts)."""

    def __init__(self, sb: Sandbox, times: int) -> None:
        self.sb, self.left = sb, times

    def __call__(self, service: str, operation: str, params: dict[str, Any], go: Callable[[], Any]) -> Any:
        result = go()
        if (service, operation) == ("iot-data", "GetThingShadow") and self.left > 0 and self.sb.counter.function:
            self.left -= 1
            self.sb.client("iot-data").update_thing_shadow(
                thingName="BX-1", payload=json.dumps({"state": {"reported": {"rssi": -70 - self.left}}}).encode())
        return result


def test_confirmation_under_shadow_contention_is_retried_not_dead_lettered() -> None:
    # Given Lambda's asynchronous retries (as the IoT rule invokes CommandAck)
    with Sandbox(async_invokes=True) as sb:
        sb.create_things(["BX-1"])
        register_box(BoxSpec(id="BX-1", name="No.3 building", lat=39.98, lng=116.31), sb.settings)
        endpoints = sb.create_push_endpoints(["alice"])
        bind(BindingSpec(client_id="alice", box_id="BX-1", target=endpoints["alice"], locale="en"))
        sb.endpoint_client = {endpoints["alice"]: "alice"}  # type: ignore[attr-defined]
        _, body = call(sb, load("api_power_off.json"))
        # When the box confirms while its shadow changes under CommandAck more often than it retries inside
        race = ShadowRace(sb, times=7)
        sb.counter.interceptors.insert(0, race)
        sb.device_shadow_update("BX-1", box_report(body["command_id"], command_status="done", contactor="open",
                                                   power="off"))
        sb.counter.interceptors.remove(race)
        # Then the contention was retried (inside, then by Lambda): succeeded, told once, no dead letter
        assert race.left == 0
        assert call(sb, load("api_get_command.json"))[1]["status"] == "succeeded"
        assert [p["status"] for p in pushes(sb) if p["kind"] == "power_off_result"] == ["succeeded"]
        assert dead_letters(sb) == []
        assert "desired" not in sb.shadow("BX-1")["state"]  # type: ignore[index]


def test_contention_is_not_a_refusal() -> None:
    from boxwatch.errors import Rejected
    from boxwatch.shadow import ShadowContention

    assert not issubclass(ShadowContention, Rejected)


# ------------------------------------------------------------------------------------------ key reuse
def test_key_reused_after_its_reservation_expired_is_a_new_command(sb: Sandbox) -> None:
    # Given alice's command, settled
    status, first = call(sb, load("api_power_off.json"))
    sb.device_shadow_update("BX-1", box_report(first["command_id"], command_status="done", contactor="open"))
    # and its key's reservation deleted by DynamoDB's TTL (moto never runs TTL: delete it here)
    ddb = sb.client("dynamodb")
    key = {"pk": {"S": f"KEY#alice#{load('api_power_off.json')['headers']['idempotency-key']}"}, "sk": {"S": "KEY"}}
    assert "Item" in ddb.get_item(TableName=sb.tables["CommandsTable"], Key=key)
    ddb.delete_item(TableName=sb.tables["CommandsTable"], Key=key)
    # When alice's phone uses the same key again, a day later
    later = load("api_power_off.json")
    later["requestContext"]["timeEpoch"] += 86_400_000
    status2, second = call(sb, later)
    # Then it is a new command (201, another id), written to the shadow; the first one is untouched
    assert (status, status2) == (201, 201) and second["command_id"] != first["command_id"]
    assert second["status"] == "pending"
    assert sb.shadow("BX-1")["state"]["desired"]["command_id"] == second["command_id"]  # type: ignore[index]
    assert call(sb, load("api_get_command.json"))[1]["status"] == "succeeded"
    # and the same request again is the same (new) command
    status3, third = call(sb, later)
    assert (status3, third["command_id"]) == (200, second["command_id"])


def test_key_past_its_ttl_but_not_yet_deleted_is_a_new_command(sb: Sandbox) -> None:
    # Given a reservation past its TTL that DynamoDB has not deleted yet (it takes up to days)
    _, first = call(sb, load("api_power_off.json"))
    later = load("api_power_off.json")
    later["requestContext"]["timeEpoch"] += 31 * 86_400_000
    # When the key is used again / Then a new command
    status, second = call(sb, later)
    assert status == 201 and second["command_id"] != first["command_id"]


def test_expiry_refuses_an_event_without_time(sb: Sandbox) -> None:
    result = sb.invoke("CommandExpiry", {"detail-type": "Scheduled Event", "time": "soon"})
    assert result["status"] == "rejected" and result["error"] == "invalid_input"
    assert len(dead_letters(sb)) == 1


# ------------------------------------------------------------------------------------------ reads
def test_me_boxes_and_box_alarms(sb: Sandbox) -> None:
    status, me = call(sb, load("api_me_boxes.json"))
    assert status == 200 and sorted(b["box_id"] for b in me["boxes"]) == ["BX-1", "BX-2"]
    assert all(b["online"] and b["latest_alarms"] == [] for b in me["boxes"])
    status, alarms = call(sb, load("api_box_alarms.json"))
    assert status == 200 and alarms == {"box_id": "BX-1", "name": "No.3 building", "alarms": []}
