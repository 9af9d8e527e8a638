"""Locked doors, through the real handlers against moto: nothing unbounded from a box reaches a
push, a log or a table; no enumeration of boxes and no other requester's sub; SMS capped per
recipient in event time. docs/security.md names the door each test keeps shut."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest

from boxwatch.models import AlarmRecord, CommandItem
from boxwatch.notify import PUSH_MAX_BYTES
from boxwatch.power_off import REPORTED_FIELDS
from boxwatch.registry import BindingSpec, BoxSpec, bind, register_box
from boxwatch_infra.sandbox import Sandbox
from tests.integration.test_command_api import box_report, call, load, pushes, retarget, schedule_at

HOSTILE_REASON = "welded\nERROR forged line \u202e" + "x" * 2000 + "\x00\x1b[2J"


def printable(s: str) -> bool:
    return all(unicodedata.category(ch) not in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"} for ch in s)


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    # Given BX-1 bound to alice and bob, BX-2 bound to bob only (as events/seed.yaml)
    with Sandbox() as sb:
        sb.create_things(["BX-1", "BX-2"])
        register_box(BoxSpec(id="BX-1", name="No.3 building", lat=39.98, lng=116.31), sb.settings)
        register_box(BoxSpec(id="BX-2", name="No.5 building", lat=39.988, lng=116.31), sb.settings)
        endpoints = sb.create_push_endpoints(["alice", "bob"])
        sb.endpoint_client = {arn: client for client, arn in endpoints.items()}  # type: ignore[attr-defined]
        for client, box in [("alice", "BX-1"), ("bob", "BX-1"), ("bob", "BX-2")]:
            bind(BindingSpec(client_id=client, box_id=box, target=endpoints[client], locale="en"))
        yield sb


def as_client(event: dict[str, Any], client: str, box: str | None = None) -> dict[str, Any]:
    """The same request by another client (and about another box: the resolver routes on the path)."""
    event = json.loads(json.dumps(event))
    event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = client
    if box is not None:
        old = event["pathParameters"]["box_id"]
        event["pathParameters"]["box_id"] = box
        event["rawPath"] = event["requestContext"]["http"]["path"] = event["rawPath"].replace(
            f"/boxes/{old}/", f"/boxes/{box}/")
    return event


def logged(sb: Sandbox, name: str, event: Any, caplog: pytest.LogCaptureFixture) -> tuple[Any, str]:
    """The handler's result and its log records (message and extra fields) as JSON lines."""
    caplog.clear()
    printed = io.StringIO()  # the metrics (EMF) are printed
    with caplog.at_level(logging.INFO), contextlib.redirect_stdout(printed):
        result = sb.invoke(name, event)
    lines = [json.dumps({k: v for k, v in r.__dict__.items() if k not in ("args", "exc_info", "exc_text")},
                        default=str, separators=(",", ":")) for r in caplog.records]
    return result, "\n".join([*lines, printed.getvalue()])


# ------------------------------------------------------------------------------------------ unbounded
def test_a_hostile_reason_is_bounded_in_the_record_the_push_and_is_pushed_once(sb: Sandbox) -> None:
    _, body = call(sb, load("api_power_off.json"))
    # When the box refuses with a 2,000-character reason full of control characters, and stuffs
    # its report with fields of its own
    sb.device_shadow_update("BX-1", box_report(body["command_id"], command_status="failed", reason=HOSTILE_REASON,
                                               power="on", contactor="closed", at=5, junk="y" * 4000,
                                               nested={"deep": "z" * 3000}))
    # Then the audit record keeps a bounded, printable reason and only the contract's fields
    _, cmd = call(sb, load("api_get_command.json"))
    assert cmd["status"] == "failed" and len(cmd["reason"]) <= 200 and printable(cmd["reason"])
    assert cmd["reason"].startswith("welded ERROR forged line")
    record = CommandItem.get(*CommandItem.key(body["command_id"]))
    assert set(record.reported) <= set(REPORTED_FIELDS) and record.reported["power"] == "on"
    # and alice's push fits 4 KB on both platforms
    raw = [m for ms in sb.pushed_messages().values() for m in ms]
    assert len(raw) == 1
    doc = json.loads(raw[0])
    assert len(doc["GCM"].encode()) <= PUSH_MAX_BYTES and len(doc["APNS"].encode()) <= PUSH_MAX_BYTES
    # and the command left the pending index: the expiry sweep never pushes it again
    for minute in range(1, 4):
        sb.invoke("CommandExpiry", schedule_at(body["expires_at"] + minute * 60_000))
    assert len([p for p in pushes(sb) if p["kind"] == "power_off_result"]) == 1


def test_a_report_naming_no_command_of_ours_is_ignored_not_stored_or_logged(
        sb: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    call(sb, load("api_power_off.json"))
    forged = load("shadow_documents_ack.json")
    forged["current"]["state"]["reported"]["command_id"] = "c-" + "\n" * 3000
    # When a documents message carries a 3,000-character command id / Then nothing, quietly
    result, logs = logged(sb, "CommandAck", forged, caplog)
    assert result["status"] == "ignored" and "\n" * 10 not in logs and len(logs) < 5000
    assert call(sb, load("api_get_command.json"))[1]["status"] == "pending"


def test_alarm_labels_from_a_box_reach_the_table_printable(sb: Sandbox) -> None:
    sb.publish_mqtt("boxwatch/boxes/BX-1/alarms", {"v": 1, "seq": 1, "cause": "overtemp", "value": 90,
                                                   "threshold": 80, "alarm_time": 1767225600000,
                                                   "unit": "\x1b[1m", "circuit": "main\r\nFAKE\u202e"},
                    client_id="BX-1", now_ms=1767225600500)
    record = AlarmRecord.get(*AlarmRecord.key("BX-1", 1))
    assert record.circuit == "main FAKE" and record.unit == "[1m"


# ------------------------------------------------------------------------------------------ payload keys
def test_a_payload_carrying_what_the_rule_adds_is_stored_under_the_topics_box(sb: Sandbox) -> None:
    # Given BX-1 publishes on its own topic a payload that names BX-2 and its own receive time
    payload = {"v": 1, "seq": 7, "cause": "overtemp", "value": 90, "threshold": 80, "alarm_time": 1767225600000,
               "thing": "BX-2", "client_id": "BX-2", "received_at": 1}
    [d] = sb.publish_mqtt("boxwatch/boxes/BX-1/alarms", payload, client_id="BX-1", now_ms=1767225600500)
    # Then the topic, the connection and IoT's clock are what the handler sees
    assert (d.event["thing"], d.event["client_id"], d.event["received_at"]) == ("BX-1", "BX-1", 1767225600500)
    assert d.result["status"] == "stored"
    assert [r.box_id for r in AlarmRecord.query("BOX#BX-2")] == []
    # and the shadow rule refuses documents that carry a thing of their own
    docs = {k: v for k, v in load("shadow_documents_ack.json").items() if k != "thing"}
    assert sb.publish_mqtt("$aws/things/BX-1/shadow/update/documents", {**docs, "thing": "BX-2"},
                           client_id="", now_ms=0) == []


# ------------------------------------------------------------------------------------------ enumeration
def test_unbound_and_unknown_boxes_get_the_same_answer(sb: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    # Given mallory, bound to nothing, asks about BX-2 (exists) and BX-404 (does not)
    answers, logs = {}, {}
    for box in ("BX-2", "BX-404"):
        for name, event in [("power", retarget(load("api_power_off.json"), box, "mallory")),
                            ("alarms", load("api_box_alarms.json")), ("command", load("api_get_command.json"))]:
            event = as_client(event, "mallory", box)
            response, log = logged(sb, "CommandApi", event, caplog)
            answers[(box, name)] = (response["statusCode"], response["body"])
            logs[(box, name)] = log
    # Then every answer is the same 404, body for body
    [(status, body)] = set(answers.values())
    assert status == 404 and json.loads(body) == {"error": "not_found", "message": "no such box"}
    # while the log tells the operator which it was, and counts the attempt on a real box
    assert all('"reason":"not_bound"' in logs[("BX-2", n)] for n in ("power", "alarms", "command"))
    assert all('"reason":"unknown_box"' in logs[("BX-404", n)] for n in ("power", "alarms", "command"))
    assert all('"Forbidden"' in logs[("BX-2", n)] for n in ("power", "alarms", "command"))
    assert not any('"Forbidden"' in logs[("BX-404", n)] for n in ("power", "alarms", "command"))
    assert sb.shadow("BX-2") is None


def test_the_command_view_hides_another_requesters_sub(sb: Sandbox) -> None:
    # Given alice powered BX-1 off; bob is bound to BX-1 too
    _, mine = call(sb, load("api_power_off.json"))
    assert mine["client_id"] == "alice" and mine["requested_by_me"] is True
    # When bob reads the command / Then he sees its status, not alice's sub
    event = load("api_get_command.json")
    event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = "bob"
    status, seen = call(sb, event)
    assert status == 200 and seen["status"] == "pending"
    assert seen["client_id"] is None and seen["requested_by_me"] is False
    assert "alice" not in json.dumps(seen)


# ------------------------------------------------------------------------------------------ SMS bill
CAROL = "+8613800138000"
T0 = 1767225600000  # 2026-01-01T00:00:00Z, an hour boundary


def sms_sent(sb: Sandbox) -> list[str]:
    from moto.sns.models import sns_backends

    backend = sns_backends[sb.template.account_id][sb.template.region]
    return [number for number, _ in backend.sms_messages.values()]


@pytest.fixture
def sms() -> Iterator[Sandbox]:
    # Given carol reached by SMS on two boxes 3 km apart, with a cap of 3 SMS per number and hour
    with Sandbox(parameter_overrides={"SmsPerRecipientPerHour": 3}) as sb:
        register_box(BoxSpec(id="BX-1", name="No.3 building", lat=39.98, lng=116.31), sb.settings)
        register_box(BoxSpec(id="BX-2", name="No.9 building", lat=40.01, lng=116.31), sb.settings)
        for box in ("BX-1", "BX-2"):
            bind(BindingSpec(client_id="carol", box_id=box, target=CAROL, target_kind="sms", locale="en"))
        yield sb


def alarm(sb: Sandbox, box: str, seq: int, received_at: int) -> Any:
    [d] = sb.publish_mqtt(f"boxwatch/boxes/{box}/alarms", {"v": 1, "seq": seq, "cause": "overcurrent", "value": 90,
                                                           "threshold": 80, "alarm_time": received_at - 1000},
                          client_id=box, now_ms=received_at)
    return d.result


def test_sms_per_recipient_are_capped_per_hour_of_event_time(sms: Sandbox) -> None:
    assert sms.settings.sms_per_recipient_per_hour == 3  # the template parameter reached the handlers
    # When both boxes raise 8 alarms in the same hour (IoT's receive time)
    results = [alarm(sms, "BX-1" if i % 2 else "BX-2", i, T0 + i * 60_000) for i in range(1, 9)]
    # Then every alarm is stored and complete (a capped SMS is final, never retried), and carol's
    # number got 3 SMS, counted across both of her bindings
    assert [r["status"] for r in results] == ["stored"] * 8
    assert sms_sent(sms) == [CAROL] * 3
    # When the next hour of event time begins / Then the number may get SMS again, up to the cap
    results = [alarm(sms, "BX-1", 100 + i, T0 + 3_600_000 + i * 1000) for i in range(5)]
    assert sms_sent(sms) == [CAROL] * 6


def test_the_cap_is_a_conditional_write(sms: Sandbox) -> None:
    from boxwatch.notify import take_sms

    seen: list[dict[str, Any]] = []

    def watch(service: str, operation: str, params: dict[str, Any], call: Any) -> Any:
        if operation == "UpdateItem" and params.get("TableName") == sms.tables["SmsQuotaTable"]:
            seen.append(params)
        return call()

    sms.counter.interceptors.insert(0, watch)
    # When the same number takes SMS of one hour / Then exactly per_hour succeed
    assert [take_sms(CAROL, T0 + i) for i in range(5)] == [True, True, True, False, False]
    # each through one UpdateItem whose condition refuses the one over the cap (no read-then-write)
    assert len(seen) == 5 and all("ConditionExpression" in p for p in seen)
    assert take_sms("+8613900139000", T0) is True  # another number has its own count


def test_sms_goes_only_to_phone_numbers(sms: Sandbox) -> None:
    from pydantic import ValidationError

    from boxwatch.models import BindingItem

    # a binding cannot name anything but an E.164 number for SMS
    for target in ("arn:aws:sns:us-east-1:123456789012:topic", "13800138000", "+86 138 0013 8000", "+0123456"):
        with pytest.raises(ValidationError):
            BindingSpec(client_id="dave", box_id="BX-1", target=target, target_kind="sms")
    # and a stored binding that does (written around the registry) is disabled, never texted
    BindingItem("BX-1", "dave", target="+8613800138000;+8613900139000", target_kind="sms", locale="en").save()
    alarm(sms, "BX-1", 1, T0)
    assert sms_sent(sms) == [CAROL]
    dave = BindingItem.get("BX-1", "dave")
    assert dave.enabled is False and dave.disabled_reason == "InvalidPhoneNumber"
