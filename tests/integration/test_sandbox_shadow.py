"""The sandbox publishes what AWS IoT publishes after a shadow update (moto does not)."""

from __future__ import annotations

import json

from boxwatch_infra.sandbox import Sandbox


def test_shadow_update_queues_delta_and_documents() -> None:
    with Sandbox() as sb:
        # Given a box with a shadow reporting power on
        sb.create_things(["BX-1"])
        sb.now_ms = 1_767_225_600_000
        sb.device_shadow_update("BX-1", {"state": {"reported": {"power": "on"}}})
        sb.mqtt_log.clear()
        # When the cloud desires power off
        sb.client("iot-data").update_thing_shadow(
            thingName="BX-1", payload=json.dumps({"state": {"desired": {"power": "off"}}}).encode()
        )
        sb.flush_mqtt()
        # Then a delta and a documents message were published, in AWS's order and shape
        topics = [t for _, t, _ in sb.mqtt_log]
        assert topics == ["$aws/things/BX-1/shadow/update/delta", "$aws/things/BX-1/shadow/update/documents"]
        delta, documents = (p for _, _, p in sb.mqtt_log)
        assert delta["state"] == {"power": "off"} and delta["version"] == 2
        assert documents["previous"]["state"] == {"reported": {"power": "on"}}
        assert documents["current"]["state"] == {"desired": {"power": "off"}, "reported": {"power": "on"}}
        assert documents["timestamp"] == 1_767_225_600
