"""The box's communication module: an MQTT client (paho) that speaks docs/device-contract.md.

Client id = thing name; TLS mutual auth for AWS IoT or plain TCP for a local broker; persistent
session. Alarms from the detector go through the durable outbox and leave it only on PUBACK. The
agent follows its device shadow: a desired power-off with an unseen, unexpired command id opens
the contactor and is reported; an expired or malformed one is refused and reported as such.

The agent can run its own threads (`start()`, one box) or be driven by a Fleet's event loop
(`on_readable`/`on_writable`/`housekeeping`, thousands of boxes on one thread).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from boxwatch_infra.device.detector import Detector, SequenceStore, Thresholds
from boxwatch_infra.device.model import DistributionBox
from boxwatch_infra.device.outbox import Outbox, OutboxStore

Clock = Callable[[], float]  # epoch seconds


@dataclass
class TlsConfig:
    ca: str
    cert: str
    key: str


def shadow_topic(thing: str, suffix: str) -> str:
    return f"$aws/things/{thing}/shadow/{suffix}"


class BoxAgent:
    def __init__(self, box: DistributionBox, host: str, port: int, state_dir: Path, *,
                 keepalive: int = 30, tls: TlsConfig | None = None, clock: Clock = time.time,
                 thresholds: Thresholds | None = None, outbox_store: OutboxStore | None = None,
                 on_alarm: Callable[[str, dict[str, Any]], None] | None = None):
        self.box = box
        self.thing = box.box_id
        self.host, self.port, self.keepalive = host, port, keepalive
        self.clock = clock
        self.started_at = clock()
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.detector = Detector(box.rated_current_a, SequenceStore(state_dir / f"{self.thing}.seq.json"),
                                 thresholds or Thresholds())
        self._own_store = outbox_store is None
        self.outbox = Outbox(outbox_store or OutboxStore(state_dir / f"{self.thing}.outbox.db"), self.thing)
        self._seen_path = state_dir / f"{self.thing}.commands.json"
        self.seen_commands: set[str] = (set(json.loads(self._seen_path.read_text())) if self._seen_path.exists()
                                        else set())
        self.on_alarm = on_alarm
        self.powered = True  # False after a power loss or a burn: the module is dead, no reconnect
        self.connected = False
        self.reports: list[dict[str, Any]] = []  # what the box reported to its shadow, for inspection
        self._inflight: dict[int, int] = {}  # paho mid -> outbox id
        self._queued: set[int] = set()  # outbox ids published and waiting for PUBACK
        self._lock = threading.RLock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.thing, clean_session=False,
                                  protocol=mqtt.MQTTv311)
        if tls is not None:
            self.client.tls_set(ca_certs=tls.ca, certfile=tls.cert, keyfile=tls.key)
        self.client.max_inflight_messages_set(20)
        self.client.on_socket_open = self._on_socket_open
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message

    # ------------------------------------------------------------------ MQTT callbacks
    @staticmethod
    def _on_socket_open(client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # without it every small publish waits ~40 ms for Nagle + delayed ACK
        raw = sock if isinstance(sock, socket.socket) else getattr(sock, "_sock", None)
        if isinstance(raw, socket.socket):
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            return
        with self._lock:
            self.connected = True
            self._inflight.clear()
            self._queued.clear()
        client.subscribe([(shadow_topic(self.thing, s), 1) for s in
                          ("update/delta", "get/accepted", "get/rejected", "update/accepted", "update/rejected")])
        # "{}" rather than an empty message: AWS reads any payload on get as a request, and some
        # brokers (amqtt 0.12) stop routing after a zero-length publish
        client.publish(shadow_topic(self.thing, "get"), b"{}", qos=1)
        self.report_state()
        self.flush()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        with self._lock:
            self.connected = False
            self._inflight.clear()
            self._queued.clear()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            entry = self._inflight.pop(mid, None)
            if entry is not None:
                self._queued.discard(entry)
                self.outbox.ack(entry)  # PUBACK: now, and only now, the alarm leaves the outbox
        self.flush()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            doc = json.loads(msg.payload or b"{}")
        except ValueError:
            return
        if msg.topic.endswith("/update/delta"):
            self._apply_desired(doc.get("state") or {})
        elif msg.topic.endswith("/get/accepted"):
            self._apply_desired(((doc.get("state") or {}).get("delta")) or {})

    # ------------------------------------------------------------------ behaviour
    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def tick(self) -> list[dict[str, Any]]:
        """Sample the sensors once; alarms go to the outbox (on disk) first, then out."""
        if not self.powered:
            return []
        m = self.box.sample(self.clock() - self.started_at)
        alarms = self.detector.step(m, self.now_ms())
        for alarm in alarms:
            self.outbox.put(f"boxwatch/boxes/{self.thing}/alarms", alarm)
            if self.on_alarm:
                self.on_alarm(self.thing, alarm)
        if alarms:
            self.flush()
        return alarms

    def flush(self) -> None:
        """Publish what is in the outbox, in order, at most `max_inflight` at a time."""
        with self._lock:
            if not self.connected or not self.powered:
                return
            for entry_id, topic, payload in self.outbox.pending(20):
                if entry_id in self._queued or len(self._inflight) >= 20:
                    continue
                info = self.client.publish(topic, payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    return
                self._inflight[info.mid] = entry_id
                self._queued.add(entry_id)

    def _apply_desired(self, desired: dict[str, Any]) -> None:
        if desired.get("power") != "off" and "command_id" not in desired:
            return
        cid, expires = desired.get("command_id"), desired.get("expires_at")
        if not isinstance(cid, str) or not cid:
            return self._report({"command_status": "refused", "reason": "malformed", "command_id": cid})
        if cid in self.seen_commands:
            return None  # already acted on (a redelivered delta)
        self.seen_commands.add(cid)
        self._seen_path.write_text(json.dumps(sorted(self.seen_commands)))
        if desired.get("power") != "off" or not isinstance(expires, int | float):
            return self._report({"command_status": "refused", "reason": "malformed", "command_id": cid})
        if expires <= self.now_ms():
            # a stale order (the box was offline past its expiry) is never executed
            return self._report({"command_status": "refused", "reason": "expired", "command_id": cid})
        if self.box.open_contactor():
            return self._report({"command_status": "done", "command_id": cid})
        return self._report({"command_status": "failed", "reason": "contactor welded", "command_id": cid})

    def _report(self, extra: dict[str, Any]) -> None:
        reported = {"power": "on" if self.box.contactor_closed and self.box.main_closed else "off",
                    "contactor": "closed" if self.box.contactor_closed else "open", "at": self.now_ms(), **extra}
        self.reports.append(reported)
        if self.connected:
            self.client.publish(shadow_topic(self.thing, "update"), json.dumps({"state": {"reported": reported}}),
                                qos=1)

    def report_state(self) -> None:
        self._report({})

    # ------------------------------------------------------------------ power and links
    def connect(self) -> None:
        self.client.connect(self.host, self.port, keepalive=self.keepalive)

    def power_loss(self) -> None:
        """The box loses power: the link dies without an MQTT DISCONNECT, and nothing restarts it."""
        self.powered = False
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with self._lock:
            self.connected = False

    # ------------------------------------------------------------------ one box, own threads
    def start(self, tick_s: float = 1.0) -> BoxAgent:
        self.client.reconnect_delay_set(1, 30)
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive)
        self.client.loop_start()

        def ticker() -> None:
            while not self._stop.wait(tick_s):
                self.tick()

        t = threading.Thread(target=ticker, name=f"tick-{self.thing}", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self, clean: bool = True) -> None:
        self._stop.set()
        if clean and self.connected:
            self.client.disconnect()
        self.client.loop_stop()
        for t in self._threads:
            t.join(2)
        if self._own_store:
            self.outbox.store.close()
