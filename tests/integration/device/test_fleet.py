"""A fleet on one thread against a real broker: faults as the backend would see them."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from boxwatch_infra.device.fleet import BoxRow, Fleet
from boxwatch_infra.mqtt_broker import LocalBroker
from tests.integration.device.test_agent_mqtt import wait_for


def grid(n: int) -> list[BoxRow]:
    """n boxes ~200 m apart in a row, west to east."""
    return [BoxRow(f"BX-{i}", f"box {i}", 39.98, 116.30 + i * 0.00235) for i in range(n)]


class Watcher:
    def __init__(self, port: int):
        self.alarms: list[dict[str, Any]] = []
        ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="watcher")
        self.c.on_connect = lambda c, u, f, r, p: c.subscribe("boxwatch/boxes/+/alarms", 1)
        self.c.on_subscribe = lambda c, u, m, r, p: ready.set()
        self.c.on_message = lambda c, u, m: self.alarms.append({"box": m.topic.split("/")[2], **json.loads(m.payload)})
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert ready.wait(5)


def test_fleet_faults(tmp_path: Path) -> None:
    with LocalBroker() as broker:
        watcher = Watcher(broker.port)
        fleet = Fleet(grid(12), "127.0.0.1", broker.port, tmp_path, keepalive=5, tick_s=0.5).start()
        try:
            assert fleet.wait_connected(10)
            # a cause raised on one box reaches the broker as that box's alarm
            fleet.raise_cause("BX-0", "residual_current")
            assert wait_for(lambda: any(a["box"] == "BX-0" for a in watcher.alarms), 15)
            assert [a["cause"] for a in watcher.alarms if a["box"] == "BX-0"] == ["residual_current"]
            # an area outage: boxes within 450 m of BX-10 drop without DISCONNECT, the others stay
            cut = fleet.cut_power(39.98, 116.30 + 10 * 0.00235, 450)
            assert sorted(cut) == ["BX-10", "BX-11", "BX-8", "BX-9"]
            assert wait_for(lambda: not any(fleet.agents[b].connected for b in cut), 5)
            assert fleet.agents["BX-0"].connected
            # a fire spreading from BX-3: it and its neighbours alarm overtemp, then fall silent
            order = fleet.spread_fire("BX-3", hops=1, delay_s=1)
            assert order == ["BX-3", "BX-2", "BX-4"]
            assert wait_for(lambda: {a["box"] for a in watcher.alarms if a["cause"] == "overtemp"} >= set(order), 20)
            assert wait_for(lambda: not any(fleet.agents[b].powered for b in order), 20)
            stats = fleet.stats()
            assert stats["powered"] == 12 - 4 - 3 and stats["outbox_pending"] == 0
        finally:
            fleet.stop()
            watcher.c.loop_stop()
            time.sleep(0.1)
