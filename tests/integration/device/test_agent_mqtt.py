"""The box agent against a real MQTT broker on 127.0.0.1: durable outbox and shadow orders."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from boxwatch_infra.aws.ports import free_port
from boxwatch_infra.device.agent import BoxAgent
from boxwatch_infra.device.detector import Thresholds
from boxwatch_infra.device.model import DistributionBox, Profile
from boxwatch_infra.mqtt_broker import LocalBroker


class VirtualClock:
    def __init__(self) -> None:
        self.t = 1_767_225_600.0

    def __call__(self) -> float:
        return self.t


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


class Subscriber:
    def __init__(self, port: int, topic: str):
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{time.monotonic_ns()}")
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(topic, 1)
        self.client.on_subscribe = lambda c, u, m, r, p: self.ready.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, json.loads(m.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def excursion(agent: BoxAgent, clock: VirtualClock) -> None:
    """Heat the cable over the threshold long enough to alarm, then cool it (re-arms the detector)."""
    t = clock() - agent.started_at
    agent.box.cable_temp_c = Profile(35.0).set(t, 95.0).set(t + 3, 35.0)
    for _ in range(5):
        clock.t += 1
        agent.tick()


@pytest.fixture
def port() -> int:
    return free_port()


def test_alarms_raised_while_the_broker_is_down_arrive_in_order_after_a_restart(tmp_path: Path, port: int) -> None:
    clock = VirtualClock()
    th = Thresholds(delay_s=1)
    # Given a connected box
    broker = LocalBroker(port).start()
    a = BoxAgent(DistributionBox.standard("BX-1"), "127.0.0.1", port, tmp_path, keepalive=5, clock=clock,
                 thresholds=th).start(tick_s=3600)
    assert wait_for(lambda: a.connected)
    # When the broker goes away and the box raises two alarms, then the box itself restarts
    broker.stop()
    assert wait_for(lambda: not a.connected)
    excursion(a, clock)
    excursion(a, clock)
    assert len(a.outbox) == 4  # each excursion: its alarm and its clear
    a.stop(clean=False)
    broker = LocalBroker(port).start()
    sub = Subscriber(port, "boxwatch/boxes/+/alarms")
    try:
        b = BoxAgent(DistributionBox.standard("BX-1"), "127.0.0.1", port, tmp_path, keepalive=5, clock=clock,
                     thresholds=th).start(tick_s=3600)
        excursion(b, clock)  # a third alarm after the restart
        # Then all three (and their clears) arrive once the link is back, in order, and leave the outbox on PUBACK
        assert wait_for(lambda: len(sub.messages) >= 6)
        assert [m["seq"] for _, m in sub.messages] == [1, 2, 3, 4, 5, 6]
        assert [m.get("state", "active") for _, m in sub.messages] == ["active", "cleared"] * 3
        assert {t for t, _ in sub.messages} == {"boxwatch/boxes/BX-1/alarms"}
        assert wait_for(lambda: len(b.outbox) == 0)
        b.stop()
    finally:
        sub.close()
        broker.stop()


@pytest.fixture
def running_box(tmp_path: Path, port: int) -> Iterator[tuple[BoxAgent, Subscriber, int]]:
    with LocalBroker(port):
        sub = Subscriber(port, "$aws/things/BX-7/shadow/update")
        agent = BoxAgent(DistributionBox.standard("BX-7"), "127.0.0.1", port, tmp_path, keepalive=5).start()
        assert wait_for(lambda: agent.connected)
        yield agent, sub, port
        agent.stop()
        sub.close()


def publish_delta(port: int, thing: str, state: dict[str, Any]) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"shadow-svc-{time.monotonic_ns()}")
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(f"$aws/things/{thing}/shadow/update/delta", json.dumps({"version": 2, "state": state}), qos=1
              ).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def reports(sub: Subscriber, command_id: str) -> list[dict[str, Any]]:
    return [m["state"]["reported"] for _, m in sub.messages if m["state"]["reported"].get("command_id") == command_id]


def test_shadow_power_off_opens_the_contactor_and_is_reported(running_box: tuple[BoxAgent, Subscriber, int]) -> None:
    agent, sub, port = running_box
    expires = int(time.time() * 1000) + 60_000
    publish_delta(port, "BX-7", {"power": "off", "command_id": "c-1", "expires_at": expires})
    assert wait_for(lambda: bool(reports(sub, "c-1")))
    [report] = reports(sub, "c-1")
    assert report["command_status"] == "done" and report["contactor"] == "open" and report["power"] == "off"
    assert agent.box.contactor_closed is False
    # a redelivered delta does not act twice
    publish_delta(port, "BX-7", {"power": "off", "command_id": "c-1", "expires_at": expires})
    time.sleep(0.3)
    assert len(reports(sub, "c-1")) == 1


def test_expired_order_is_refused(running_box: tuple[BoxAgent, Subscriber, int]) -> None:
    agent, sub, port = running_box
    publish_delta(port, "BX-7", {"power": "off", "command_id": "c-2", "expires_at": int(time.time() * 1000) - 1})
    assert wait_for(lambda: bool(reports(sub, "c-2")))
    [report] = reports(sub, "c-2")
    assert report["command_status"] == "refused" and report["reason"] == "expired"
    assert agent.box.contactor_closed is True and report["contactor"] == "closed"
