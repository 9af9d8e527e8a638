"""`python -m boxwatch_infra.localcloud.latency [--rate 50] [--duration 60] [--boxes 500]`

End-to-end latency on the local cloud: boxes publish alarms over MQTT (QoS 1) at a steady rate;
each alarm goes through the broker, the AlarmIngest rule, the function (DynamoDB and SNS in
moto_server) to the phone. Measured per alarm, from the box's publish:
- to the SNS Publish (when moto accepted the push), the figure the README gives;
- to the phone's inbox;
- and, as the floor to compare with, the broker's own publish -> subscriber delivery of the same
  messages (a plain MQTT subscriber on the alarm topics).
A warm-up of 40 alarms comes first and is not measured. Boxes are 2 km apart, one client each:
every alarm is one push (no same-cause neighbours); at 50 alarms/s the 500 boxes alarm every 10 s
each (a heat-wave storm, as the storm benchmark).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import selectors
import statistics
import sys
import time
from typing import Any

import paho.mqtt.client as mqtt

from boxwatch.registry import BoxSpec
from boxwatch_infra.localcloud.cloud import LocalCloudConfig, LocalCloudProcess
from boxwatch_infra.localcloud.seed import ClientSpec, provision

STALL_S = 20.0
WARMUP = 40  # alarms, 5 per function worker thread
BOXES = 500  # at 50 alarms/s each box alarms every 10 s: a storm, not one box firing every second


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": round(pct(values, 0.5), 1), "p95": round(pct(values, 0.95), 1),
            "p99": round(pct(values, 0.99), 1), "max": round(max(values), 1) if values else float("nan"),
            "mean": round(statistics.fmean(values), 1) if values else float("nan")}


class Mux:
    """The boxes' paho clients on this one thread, over epoll. paho's own loop thread uses
    select(), which fails for descriptors past 1024: with three per client (socket and wake-up
    pair) a few hundred boxes stop publishing silently (the first 500-box run lost 972 alarms)."""

    def __init__(self, clients: list[mqtt.Client]) -> None:
        self.clients = clients
        self.sel = selectors.DefaultSelector()
        self.registered: dict[int, tuple[Any, int]] = {}
        self.next_misc = 0.0

    def _sync(self) -> None:
        for i, c in enumerate(self.clients):
            sock = c.socket()
            reg = self.registered.get(i)
            if sock is None:
                if reg is not None:
                    with contextlib.suppress(KeyError, ValueError, OSError):
                        self.sel.unregister(reg[0])
                    del self.registered[i]
                continue
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.want_write() else 0)
            if reg is not None and reg[0] is sock:
                if reg[1] != events:
                    self.sel.modify(sock, events, c)
                    self.registered[i] = (sock, events)
                continue
            self.sel.register(sock, events, c)
            self.registered[i] = (sock, events)

    def pump(self, timeout: float) -> None:
        self._sync()
        for key, mask in self.sel.select(timeout) if self.registered else []:
            if mask & selectors.EVENT_READ:
                key.data.loop_read()
            if mask & selectors.EVENT_WRITE:
                key.data.loop_write()
        if time.monotonic() >= self.next_misc:
            self.next_misc = time.monotonic() + 1.0
            for c in self.clients:
                c.loop_misc()  # keep-alive pings

    def close(self) -> None:
        self.sel.close()


def run(rate: float, duration: float, n_boxes: int, out: Any = sys.stdout) -> dict[str, Any]:
    with LocalCloudProcess(LocalCloudConfig()) as lc:
        info = lc.info
        boxes = [BoxSpec(id=f"BX-L{i:04d}", name=f"Latency {i}", address="", lat=39.5 + (i // 10) * 0.02,
                         lng=116.0 + (i % 10) * 0.025) for i in range(n_boxes)]
        provision(info, boxes, [ClientSpec(f"lat-{b.id}", (b.id,), "en") for b in boxes])
        port = int(info["mqtt"]["port"])

        delivered: dict[tuple[str, int], float] = {}
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="latency-subscriber")

        def on_message(c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
            doc = json.loads(msg.payload)
            delivered[(msg.topic.split("/")[2], doc["seq"])] = time.time() * 1000

        sub.on_message = on_message
        sub.connect("127.0.0.1", port)
        sub.subscribe("boxwatch/boxes/+/alarms", qos=1)
        sub.loop_start()
        clients = []
        for b in boxes:
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=b.id)
            c.connect("127.0.0.1", port, keepalive=60)
            clients.append((b.id, c))
        mux = Mux([c for _, c in clients])
        deadline = time.monotonic() + 60
        while not all(c.is_connected() for _, c in clients) and time.monotonic() < deadline:
            mux.pump(0.05)
        if not all(c.is_connected() for _, c in clients):
            raise RuntimeError("not every box connected within 60 s")
        settle = time.monotonic() + 2.0
        while time.monotonic() < settle:
            mux.pump(0.05)
        lc.drain()

        seq = dict.fromkeys((b.id for b in boxes), 0)
        # warm-up, not measured: the function threads' first calls load botocore models and open
        # connections (a deployed stack is past that after its first minute)
        warm = clients[:WARMUP]
        for box, client in warm:
            seq[box] += 1
            client.publish(f"boxwatch/boxes/{box}/alarms", json.dumps({
                "v": 1, "seq": seq[box], "cause": "overtemp", "alarm_time": int(time.time() * 1000), "value": 90.0,
                "threshold": 80.0, "unit": "degC"}), qos=1)
        since, warmed, until = 0, 0, time.monotonic() + 60
        while warmed < len(warm) and time.monotonic() < until:
            items, since = lc.pushes(since)
            warmed += len(items)
            mux.pump(0.2)
        lc.drain()

        sent: dict[tuple[str, int], float] = {}
        total = int(rate * duration)
        t_start = time.monotonic()
        out.write(f"publishing {total} alarms at {rate:g}/s from {n_boxes} boxes for {duration:g} s ...\n")
        out.flush()
        for k in range(total):
            target = t_start + k / rate
            while (delay := target - time.monotonic()) > 0:
                mux.pump(min(delay, 0.02))
            box, client = clients[k % len(clients)]
            seq[box] += 1
            now_ms = time.time() * 1000
            client.publish(f"boxwatch/boxes/{box}/alarms", json.dumps({
                "v": 1, "seq": seq[box], "cause": "overtemp", "alarm_time": int(now_ms), "value": 90.0 + k % 7,
                "threshold": 80.0, "unit": "degC"}), qos=1)
            sent[(box, seq[box])] = now_ms
            mux.pump(0)  # on the wire now
        achieved = total / (time.monotonic() - t_start)
        # a backlog drains as long as pushes keep coming; stop when all arrived or none for STALL_S
        pushes: list[dict[str, Any]] = []
        last_progress = time.monotonic()
        while time.monotonic() - last_progress < STALL_S:
            items, since = lc.pushes(since)
            if items:
                pushes += items
                last_progress = time.monotonic()
            if len(pushes) >= total:
                break
            pump_until = time.monotonic() + 0.5
            while time.monotonic() < pump_until:
                mux.pump(0.05)  # PUBACKs, keep-alive pings
        stats = lc.console("/stats")
        for _, c in clients:
            c.disconnect()
        mux.pump(0)
        mux.close()
        sub.loop_stop()

    to_sns: list[float] = []
    to_phone: list[float] = []
    by_second: dict[int, list[float]] = {}
    for p in pushes:
        key = (p["box"], p["data"].get("seq"))
        if key not in sent:
            continue
        t_pub = sent[key]
        to_sns.append(p["sns_at_ms"] - t_pub)
        to_phone.append(p["received_at_ms"] - t_pub)
        by_second.setdefault(int((t_pub - min(sent.values())) // 10_000), []).append(p["sns_at_ms"] - t_pub)
    broker = [delivered[k] - sent[k] for k in sent if k in delivered]
    first = min(sent.values()) if sent else 0.0
    last_push = max((p["sns_at_ms"] for p in pushes), default=first)
    throughput = len(to_sns) / ((last_push - first) / 1000) if last_push > first else 0.0
    result = {
        "rate_target": rate, "rate_achieved": round(achieved, 1), "duration_s": duration, "boxes": n_boxes,
        "alarms_sent": total, "pushes_received": len(to_sns),
        "processed_per_s": round(throughput, 1),  # first publish to last push: the capacity when saturated
        "mqtt_publish_to_sns_publish_ms": summary(to_sns),
        "mqtt_publish_to_phone_ms": summary(to_phone),
        "broker_publish_to_subscriber_ms": summary(broker),
        "p50_by_10s_window_ms": {f"{k * 10}-{k * 10 + 10}s": round(pct(v, 0.5), 1)
                                 for k, v in sorted(by_second.items())},
        "alarm_ingest": stats["functions"].get("AlarmIngestFunction"),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--boxes", type=int, default=BOXES)
    args = ap.parse_args(argv)
    result = run(args.rate, args.duration, args.boxes)
    print(json.dumps(result, indent=1))
    return 0 if result["pushes_received"] == result["alarms_sent"] else 1


if __name__ == "__main__":
    sys.exit(main())
