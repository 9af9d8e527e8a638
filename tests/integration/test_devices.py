"""Phones that register themselves (POST/GET/DELETE /me/devices on the real CommandApi handler),
pushes to every device of a bound client, SNS's disabled endpoints, and the migration of bindings
of the older form (one endpoint ARN, number or topic per binding)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from boxwatch.bindings import bindings_of_box
from boxwatch.devices import list_devices, migrate_bindings
from boxwatch.models import BindingItem
from boxwatch.notify import Notification, send
from boxwatch.registry import BindingSpec, BoxSpec, bind, register_box
from boxwatch_infra.aws.events import http_api_event
from boxwatch_infra.cli import main
from boxwatch_infra.sandbox import Sandbox, decode_push

NOW = 1767225630000
TOKEN = "fcm-token-of-a-phone-0001"


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox() as sb:
        register_box(BoxSpec(id="BX-1", name="No.3 building", lat=39.98, lng=116.31), sb.settings)
        yield sb


def api(sb: Sandbox, method: str, client: str, body: Any = None, device: str | None = None,
        raw: str | None = None) -> tuple[int, dict[str, Any]]:
    path, route = ("/me/devices", "/me/devices") if device is None else (f"/me/devices/{device}",
                                                                         "/me/devices/{device_id}")
    event = http_api_event(method, path, route, client, NOW, None if device is None else {"device_id": device},
                           headers={"content-type": "application/json"}, body=body)
    if raw is not None:
        event["body"] = raw
    response = sb.invoke("CommandApi", event)
    return int(response["statusCode"]), json.loads(response.get("body") or "{}")


def endpoints(sb: Sandbox) -> dict[str, dict[str, Any]]:
    from moto.sns.models import sns_backends

    backend = sns_backends[sb.template.account_id][sb.template.region]
    return {arn: {**ep.attributes, "owner": sb.endpoint_owner(arn)} for arn, ep in backend.platform_endpoints.items()}


def alarm_note() -> Notification:
    return Notification("alarm", "BX-1", {"cause": "overtemp", "seq": 1, "boxes": []}, NOW,
                        {"cause": "overtemp", "value": 90, "threshold": 85, "unit": "degC", "local_time": "now",
                         "box_name": "No.3 building", "address": "", "lat": 39.98, "lng": 116.31})


def pushed_to(sb: Sandbox) -> list[str]:
    return sorted(str(sb.endpoint_owner(arn)) for arn, ms in sb.pushed_messages().items() for m in ms
                  if decode_push(m)["kind"] == "alarm")


def test_registering_twice_is_one_device_and_one_endpoint(sb: Sandbox) -> None:
    # When alice's app registers its token twice
    first = api(sb, "POST", "alice", {"platform": "fcm", "token": TOKEN, "locale": "en"})
    again = api(sb, "POST", "alice", {"platform": "fcm", "token": TOKEN, "locale": "zh-CN"})
    # Then both answer the same device, and SNS holds one endpoint for the token, alice's
    assert first[0] == again[0] == 200 and first[1]["device_id"] == again[1]["device_id"]
    assert [(e["Token"], e["owner"]) for e in endpoints(sb).values()] == [(TOKEN, "alice")]
    # and GET /me/devices lists it with the latest locale, without token or endpoint
    status, listed = api(sb, "GET", "alice")
    assert status == 200 and [(d["device_id"], d["locale"], d["enabled"]) for d in listed["devices"]] == [
        (first[1]["device_id"], "zh-CN", True)]
    assert TOKEN not in json.dumps(listed) and "arn:" not in json.dumps(listed)


def test_a_token_moved_to_another_user_has_one_owner(sb: Sandbox) -> None:
    # Given alice and bob bound to BX-1, alice's phone registered
    for client in ("alice", "bob"):
        bind(BindingSpec(client_id=client, box_id="BX-1", locale="en"))
    api(sb, "POST", "alice", {"platform": "fcm", "token": TOKEN})
    # When bob registers the same token (the phone changed hands)
    status, body = api(sb, "POST", "bob", {"platform": "fcm", "token": TOKEN})
    # Then the device is bob's only, the endpoint names bob, and a push of BX-1 reaches it once, as bob's
    assert status == 200
    assert [d.device_id for d in list_devices("bob")] == [body["device_id"]] and list_devices("alice") == []
    assert [e["owner"] for e in endpoints(sb).values()] == ["bob"]
    send(sb.client("sns"), bindings_of_box("BX-1"), alarm_note())
    assert pushed_to(sb) == ["bob"]


def test_only_the_owner_deletes_a_device_and_its_endpoint(sb: Sandbox) -> None:
    _, body = api(sb, "POST", "alice", {"platform": "apns", "token": "0a1b2c3d4e5f60718293a4b5c6d7e8f9"})
    # When bob deletes alice's device, or a device id that does not exist / Then 404 both, nothing gone
    assert api(sb, "DELETE", "bob", device=body["device_id"])[0] == 404
    assert api(sb, "DELETE", "alice", device="d-00000000000000000000")[0] == 404
    assert api(sb, "DELETE", "alice", device="../etc")[0] == 404
    assert len(endpoints(sb)) == 1
    # When alice deletes it / Then it and its SNS endpoint are gone
    assert api(sb, "DELETE", "alice", device=body["device_id"])[0] == 204
    assert endpoints(sb) == {} and list_devices("alice") == []


@pytest.mark.parametrize("body,raw", [({"platform": "wns", "token": TOKEN}, None),
                                      ({"platform": "fcm", "token": "x"}, None),
                                      ({"platform": "fcm", "token": TOKEN, "locale": "fr"}, None),
                                      ({"platform": "fcm", "token": "a b\nc" * 3}, None),
                                      (None, "{not json"), (None, "[1, 2]")])
def test_bad_registrations_are_400_and_create_nothing(sb: Sandbox, body: Any, raw: str | None) -> None:
    status, answer = api(sb, "POST", "alice", body, raw=raw)
    assert status == 400 and answer["error"] == "invalid_input"
    assert endpoints(sb) == {} and list_devices("alice") == []


def test_a_disabled_endpoint_is_marked_skipped_and_re_enabled_by_registering(sb: Sandbox) -> None:
    # Given alice with two phones, bound to BX-1
    bind(BindingSpec(client_id="alice", box_id="BX-1", locale="en"))
    api(sb, "POST", "alice", {"platform": "fcm", "token": TOKEN})
    _, old = api(sb, "POST", "alice", {"platform": "fcm", "token": "fcm-token-of-an-old-phone"})
    sns = sb.client("sns")
    dead = next(arn for arn, e in endpoints(sb).items() if e["Token"] == "fcm-token-of-an-old-phone")
    # When FCM reports the old phone's token dead (SNS disables the endpoint) and BX-1 alarms
    sns.set_endpoint_attributes(EndpointArn=dead, Attributes={"Enabled": "false"})
    report = send(sns, bindings_of_box("BX-1"), alarm_note())
    # Then the live phone got it, the dead one is marked disabled (not a failure to retry)
    assert report.failed == [] and report.disabled == [f"alice/{old['device_id']}"] and len(report.sent) == 1
    assert {d.device_id: d.enabled for d in list_devices("alice")}[old["device_id"]] is False
    # and the next push does not try it
    assert send(sns, bindings_of_box("BX-1"), alarm_note()).disabled == []
    # When the old phone's app registers its token again / Then the endpoint and device are enabled
    api(sb, "POST", "alice", {"platform": "fcm", "token": "fcm-token-of-an-old-phone"})
    assert str(endpoints(sb)[dead]["Enabled"]).lower() == "true"
    assert len(send(sns, bindings_of_box("BX-1"), alarm_note()).sent) == 2


def test_exactly_once_is_per_device_under_a_retry(sb: Sandbox) -> None:
    # Given alice with two phones and an SMS number on her binding
    bind(BindingSpec(client_id="alice", box_id="BX-1", locale="en", sms="+8613800138000"))
    api(sb, "POST", "alice", {"platform": "fcm", "token": TOKEN})
    api(sb, "POST", "alice", {"platform": "apns", "token": "0a1b2c3d4e5f60718293a4b5c6d7e8f9"})
    first = send(sb.client("sns"), bindings_of_box("BX-1"), alarm_note())
    # Then each phone and the number is one target
    assert sorted(k.split("/")[1][:2] for k in first.sent) == ["d-", "d-", "sm"]
    # When a retry skips what an earlier attempt sent / Then nothing is sent twice
    assert send(sb.client("sns"), bindings_of_box("BX-1"), alarm_note(), skip=first.sent[:2]).sent == first.sent[2:]


def test_migrate_turns_older_bindings_into_client_bindings_with_devices(sb: Sandbox) -> None:
    # Given bindings of the older form: an endpoint ARN, a phone number, a topic, a dead endpoint
    register_box(BoxSpec(id="BX-2", name="B", lat=39.99, lng=116.31), sb.settings)
    arns = sb.create_push_endpoints(["alice", "gone"])
    topic = sb.client("sns").create_topic(Name="boxwatch-client-ops")["TopicArn"]
    bind(BindingSpec(client_id="alice", box_id="BX-1", target=arns["alice"], locale="en"))
    bind(BindingSpec(client_id="alice", box_id="BX-2", target=arns["alice"], locale="en"))
    bind(BindingSpec(client_id="sam", box_id="BX-1", target="+8613800138000", target_kind="sms"))
    bind(BindingSpec(client_id="ops", box_id="BX-1", target=topic, target_kind="topic"))
    bind(BindingSpec(client_id="gone", box_id="BX-1", target=arns["gone"]))
    sb.client("sns").delete_endpoint(EndpointArn=arns["gone"])
    before = send(sb.client("sns"), bindings_of_box("BX-1"), alarm_note())
    # When the operator migrates
    done = migrate_bindings(NOW, sb.client("sns"))
    # Then no binding carries a target; alice has one device (her endpoint), sam an sms, ops a topic
    assert (sorted(done.devices), done.sms, done.topics, done.dropped) == (
        ["alice BX-1", "alice BX-2"], ["sam BX-1"], ["ops BX-1"], ["gone BX-1"])
    assert all(b.target is None for b in BindingItem.scan())
    assert [d.endpoint for d in list_devices("alice")] == [arns["alice"]]
    sam = BindingItem.get("BX-1", "sam")
    assert (sam.sms, BindingItem.get("BX-1", "ops").topic) == ("+8613800138000", topic)
    # and a push reaches the same places as before, once each (a dead endpoint is no target)
    after = send(sb.client("sns"), bindings_of_box("BX-1"), alarm_note())
    assert sorted(k.split("/")[0] for k in after.sent) == sorted(k for k in before.sent if k != "gone")
    # When it runs again / Then nothing changes
    again = migrate_bindings(NOW, sb.client("sns"))
    assert (again.devices, again.sms, again.topics, again.dropped) == ([], [], [], [])


def test_cli_binds_a_client_id_and_migrates(sb: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a deployed stack whose outputs name the tables
    tables = {k: v for k, v in sb.template.resources.items() if v["Type"] == "AWS::DynamoDB::Table"}
    body = {"Resources": {k: {"Type": v["Type"], "Properties": sb.template.resolve(v["Properties"])}
                          for k, v in tables.items()},
            "Outputs": {f"{k}Name": {"Value": {"Ref": k}} for k in tables}}
    sb.client("cloudformation").create_stack(StackName="boxwatch-test", TemplateBody=json.dumps(body))
    assert main(["boxes", "register", "--id", "BX-1", "--name", "A", "--lat", "39.98", "--lng", "116.31",
                 "--stack", "boxwatch-test"]) == 0
    # When the operator binds a client id with an SMS number, no ARN
    assert main(["clients", "bind", "alice", "BX-1", "--sms", "+8613800138000", "--locale", "en",
                 "--stack", "boxwatch-test"]) == 0
    assert main(["clients", "bind", "alice", "BX-1", "--sms", "12345", "--stack", "boxwatch-test"]) == 2
    # and binds bob the older way, then migrates
    arn = sb.create_push_endpoints(["bob"])["bob"]
    assert main(["clients", "bind", "bob", "BX-1", "--target", arn, "--stack", "boxwatch-test"]) == 0
    capsys.readouterr()
    assert main(["clients", "migrate", "--stack", "boxwatch-test"]) == 0
    # Then both are client bindings, bob's endpoint his device
    assert json.loads(capsys.readouterr().out)["devices"] == ["bob BX-1"]
    alice, bob = BindingItem.get("BX-1", "alice"), BindingItem.get("BX-1", "bob")
    assert (alice.target, alice.sms, alice.locale, bob.target) == (None, "+8613800138000", "en", None)
    assert [d.endpoint for d in list_devices("bob")] == [arn]

