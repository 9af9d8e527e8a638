"""Issue 6: the system through the local cloud - MQTT broker, rules, shadow, functions from the
template, SNS to the phones' inboxes - with plain paho clients as boxes."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import boto3
import paho.mqtt.client as mqtt
import pytest

from boxwatch.registry import BoxSpec
from boxwatch_infra.localcloud.cloud import LocalCloudProcess
from boxwatch_infra.localcloud.seed import ClientSpec, provision

pytestmark = pytest.mark.e2e


def wait_for(cond: Callable[[], Any], timeout: float = 20.0, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s")


class Box:
    """A plain paho client speaking the device contract (client id = thing name)."""

    def __init__(self, port: int, thing: str, keepalive: int = 30, loop: bool = True):
        self.thing = thing
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=thing)
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self.client.on_connect = lambda *a: self.connected.set()
        self.client.connect("127.0.0.1", port, keepalive=keepalive)
        if loop:
            self.client.loop_start()
            assert self.connected.wait(5)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.received.append((msg.topic, json.loads(msg.payload or b"{}")))

    def subscribe_shadow(self) -> None:
        topics = [f"$aws/things/{self.thing}/shadow/{s}" for s in ("update/delta", "update/accepted", "get/accepted")]
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe([(t, 1) for t in topics])
        assert done.wait(5)

    def publish(self, topic: str, doc: dict[str, Any]) -> None:
        self.client.publish(topic, json.dumps(doc), qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def inbox(lc: LocalCloudProcess, client: str) -> list[dict[str, Any]]:
    return list(lc.console(f"/inbox/{client}")["pushes"])


def test_stack_comes_from_the_template(local_cloud: LocalCloudProcess, cloud_env: dict[str, Any]) -> None:
    info = local_cloud.info
    cfn = boto3.client("cloudformation")
    resources = cfn.describe_stack_resources(StackName=info["stack"])["StackResources"]
    kinds = {r["ResourceType"] for r in resources}
    assert {"AWS::DynamoDB::Table", "AWS::Lambda::Function", "AWS::IAM::Role", "AWS::SQS::Queue"} <= kinds
    tables = boto3.client("dynamodb").list_tables()["TableNames"]
    assert info["outputs"]["BoxesTableName"] in tables
    # rules, schedules and routes are the template's, run locally
    assert any("topic(3) AS thing" in r["sql"] and r["rule"] == "AlarmIngestRule" for r in info["rules"])
    assert info["schedules"] and all(s["expression"].startswith("rate(") for s in info["schedules"])
    assert any(r["route"] == "POST /boxes/{box_id}/power-off" for api in info["routes"] for r in api["routes"])


def test_alarm_over_mqtt_reaches_the_clients_inbox(local_cloud: LocalCloudProcess, cloud_env: dict[str, Any]) -> None:
    provision(cloud_env, [BoxSpec(id="BX-E2E-1", name="No.1 building", address="1 Test Rd", lat=39.98, lng=116.31)],
              [ClientSpec("alice-e2e", ("BX-E2E-1",))])
    box = Box(cloud_env["mqtt"]["port"], "BX-E2E-1")
    try:
        t0 = int(time.time() * 1000)
        box.publish("boxwatch/boxes/BX-E2E-1/alarms", {"v": 1, "seq": 1, "cause": "overtemp", "alarm_time": t0,
                                                      "value": 92.5, "threshold": 80.0, "unit": "degC"})
        pushes = wait_for(lambda: inbox(local_cloud, "alice-e2e"))
    finally:
        box.close()
    push = pushes[0]
    assert push["kind"] == "alarm" and push["box"] == "BX-E2E-1"
    assert "No.1 building" in push["title"] or "No.1 building" in push["body"]
    assert push["trigger"].startswith("rule:AlarmIngestRule")
    assert 0 <= push["latency_ms"] < 10_000


def test_power_off_reaches_the_box_through_its_shadow(local_cloud: LocalCloudProcess,
                                                       cloud_env: dict[str, Any]) -> None:
    provision(cloud_env, [BoxSpec(id="BX-E2E-2", name="No.2 building", address="2 Test Rd", lat=39.981, lng=116.311)],
              [ClientSpec("bob-e2e", ("BX-E2E-2",))])
    box = Box(cloud_env["mqtt"]["port"], "BX-E2E-2")
    try:
        box.subscribe_shadow()
        box.publish("$aws/things/BX-E2E-2/shadow/update",
                    {"state": {"reported": {"power": "on", "contactor": "closed"}}})
        wait_for(lambda: any(t.endswith("/update/accepted") for t, _ in box.received))
        api = next(iter(cloud_env["apis"].values()))
        req = urllib.request.Request(f"{api}/boxes/BX-E2E-2/power-off", method="POST", data=b"",
                                     headers={"Authorization": "Bearer local:bob-e2e",
                                              "Idempotency-Key": "e2e-power-off-1"})
        with urllib.request.urlopen(req, timeout=20) as resp:
            assert resp.status == 201
            command = json.loads(resp.read())
        delta = wait_for(lambda: [d for t, d in box.received if t.endswith("/update/delta")])
        order = delta[0]["state"]
        assert order["power"] == "off" and order["command_id"] == command["command_id"]
        # the box obeys and reports: CommandAck (rule on update/documents) settles and tells bob
        box.publish("$aws/things/BX-E2E-2/shadow/update", {"state": {"reported": {
            "power": "off", "contactor": "open", "command_id": order["command_id"], "command_status": "done",
            "at": int(time.time() * 1000)}}})
        result = wait_for(lambda: [p for p in inbox(local_cloud, "bob-e2e") if p["kind"] == "power_off_result"])
    finally:
        box.close()
    assert result[0]["data"]["status"] == "succeeded"
    # unauthenticated and unbound callers are refused at the door / by the function
    req = urllib.request.Request(f"{api}/me/boxes")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 401


def test_keep_alive_timeout_is_a_lifecycle_event_presence_sees(local_cloud: LocalCloudProcess,
                                                                cloud_env: dict[str, Any]) -> None:
    provision(cloud_env, [BoxSpec(id="BX-E2E-3", name="No.3 building", address="3 Test Rd", lat=39.982, lng=116.312)],
              [ClientSpec("carol-e2e", ("BX-E2E-3",))])
    # an alarm, then the box goes silent: no PINGREQ, socket left open (a burned module)
    box = Box(cloud_env["mqtt"]["port"], "BX-E2E-3", keepalive=2)
    box.publish("boxwatch/boxes/BX-E2E-3/alarms", {"v": 1, "seq": 1, "cause": "overtemp",
                                                  "alarm_time": int(time.time() * 1000), "value": 99.0,
                                                  "threshold": 80.0})
    wait_for(lambda: inbox(local_cloud, "carol-e2e"))
    box.client.loop_stop()
    try:
        event = wait_for(lambda: [e for e in local_cloud.console("/lifecycle")
                                  if e["clientId"] == "BX-E2E-3" and e["eventType"] == "disconnected"], timeout=10)
    finally:
        sock = box.client.socket()
        if sock is not None:
            sock.close()
    assert event[0]["disconnectReason"] == "MQTT_KEEP_ALIVE_TIMEOUT"
    assert event[0]["clientInitiatedDisconnect"] is False
    # Presence saw it: the box is offline in the registry, and carol got the third alarm
    offline = wait_for(lambda: [p for p in inbox(local_cloud, "carol-e2e") if p["kind"] == "offline_after_alarm"])
    assert offline[0]["trigger"].startswith("rule:PresenceRule")
    assert offline[0]["data"]["reason"] == "MQTT_KEEP_ALIVE_TIMEOUT"
    item = boto3.client("dynamodb").get_item(TableName=cloud_env["outputs"]["BoxesTableName"],
                                             Key={"box_id": {"S": "BX-E2E-3"}})["Item"]
    assert item["online"] == {"BOOL": False}


def test_shadow_service_keeps_aws_semantics(local_cloud: LocalCloudProcess, cloud_env: dict[str, Any]) -> None:
    box = Box(cloud_env["mqtt"]["port"], "BX-E2E-4")
    try:
        done = threading.Event()
        box.client.on_subscribe = lambda *a: done.set()
        box.client.subscribe([("$aws/things/BX-E2E-4/shadow/#", 1)])
        assert done.wait(5)
        box.publish("$aws/things/BX-E2E-4/shadow/get", {"clientToken": "t0"})
        rejected = wait_for(lambda: [d for t, d in box.received if t.endswith("/get/rejected")])
        assert rejected[0]["code"] == 404 and rejected[0]["clientToken"] == "t0"
        box.publish("$aws/things/BX-E2E-4/shadow/update", {"state": {"reported": {"power": "on"}}, "clientToken": "t1"})
        accepted = wait_for(lambda: [d for t, d in box.received if t.endswith("/update/accepted")])
        assert accepted[0]["version"] == 1 and accepted[0]["clientToken"] == "t1"
        docs = wait_for(lambda: [d for t, d in box.received if t.endswith("/update/documents")])
        assert docs[0]["previous"]["version"] == 0 and docs[0]["current"]["state"]["reported"] == {"power": "on"}
        # a stale version is refused with 409, as AWS does
        box.publish("$aws/things/BX-E2E-4/shadow/update", {"state": {"reported": {"power": "off"}}, "version": 7})
        conflict = wait_for(lambda: [d for t, d in box.received if t.endswith("/update/rejected")])
        assert conflict[0]["code"] == 409
        # the iot-data HTTP API (what the functions use) sees the same shadow, and its updates reach MQTT
        iotdata = boto3.client("iot-data")
        doc = json.loads(iotdata.get_thing_shadow(thingName="BX-E2E-4")["payload"].read())
        assert doc["state"]["reported"] == {"power": "on"} and doc["version"] == 1
        iotdata.update_thing_shadow(thingName="BX-E2E-4", payload=json.dumps(
            {"state": {"desired": {"power": "off"}}}).encode())
        delta = wait_for(lambda: [d for t, d in box.received if t.endswith("/update/delta")])
        assert delta[0]["state"] == {"power": "off"} and delta[0]["version"] == 2
    finally:
        box.close()


def test_an_outage_is_told_through_the_parts_queue(local_cloud: LocalCloudProcess, cloud_env: dict[str, Any]) -> None:
    # Given three boxes 100 m apart and an online neighbour 200 m away, whose owner dan is
    boxes = [BoxSpec(id=f"BX-E2E-O{i}", name=f"Outage {i}", address="", lat=39.99, lng=116.32 + i * 0.00117)
             for i in range(3)]
    near = BoxSpec(id="BX-E2E-ON", name="Neighbour", address="", lat=39.9918, lng=116.32117)
    provision(cloud_env, [*boxes, near], [ClientSpec("dan-e2e", ("BX-E2E-ON",))])
    online = [Box(cloud_env["mqtt"]["port"], b.id) for b in [*boxes, near]]
    try:
        wait_for(lambda: all(b.client.is_connected() for b in online))
        # When the three drop together (clean disconnects are drops too)
        for b in online[:3]:
            b.close()
        # Then the sweep decides one incident and OutageNotify, fed by the parts queue, tells dan
        pushes = wait_for(lambda: [p for p in inbox(local_cloud, "dan-e2e") if p["kind"] == "neighbour_outage"],
                          timeout=40)
    finally:
        online[3].close()
    assert pushes[0]["trigger"].startswith("sqs:OutagePartsQueue")
    assert sorted(pushes[0]["data"]["offline_boxes"]) == [b.id for b in boxes]
    sources = local_cloud.console("/stats")["event_sources"]
    assert any(s["function"] == "OutageNotifyFunction" and s["received"] >= 1 for s in sources)
