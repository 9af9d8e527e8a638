"""Fleets for the benchmarks: boxes over a city, their owners' phones, and how alarms arrive.

Everything goes through the sandbox the way replay drives it: boxes are bulk-imported with
`registry.import_boxes` (BatchWriteItem), alarms are MQTT messages through the template's IoT
rules into the real AlarmIngest handler.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from boxwatch.registry import BindingSpec, BoxSpec, import_bindings, import_boxes
from boxwatch_infra.aws.iot_rules import MessageContext
from boxwatch_infra.sandbox import START_MS, Delivery, Sandbox

# Beijing inside the 5th ring road, roughly 31 km x 30 km (~930 km²)
CITY = (39.76, 40.03, 116.20, 116.55)
# an area the size of Beijing municipality (~16,000 km²: 111 km x 145 km around the city)
MUNICIPALITY = (39.6, 40.6, 115.8, 117.5)
# five boxes that alarm in the per-alarm benchmark: within ~1.2 km of each other, so the later ones
# have same-cause neighbours (the second-alarm path runs), at the same places in every fleet
ALARMING = [(39.98, 116.31), (39.981, 116.311), (39.979, 116.312), (39.985, 116.305), (39.975, 116.316)]


def city_boxes(n: int, seed: int = 7, prefix: str = "BX",
               area: tuple[float, float, float, float] = CITY) -> Iterator[BoxSpec]:
    """n boxes spread uniformly over the area (same seed, same fleet)."""
    rng = random.Random(seed)
    lat_lo, lat_hi, lng_lo, lng_hi = area
    for i in range(n):
        yield BoxSpec(id=f"{prefix}-{i:06d}", name=f"box {i}", address=f"{i} Example Rd",
                      lat=rng.uniform(lat_lo, lat_hi), lng=rng.uniform(lng_lo, lng_hi))


def load_boxes(sb: Sandbox, specs: Iterator[BoxSpec]) -> int:
    n = 0
    for _ in import_boxes(specs, sb.settings):
        n += 1
    return n


def bind_owners(sb: Sandbox, owners: dict[str, list[str]]) -> None:
    """client id -> boxes; one FCM phone per client, registered as the app does."""
    sb.register_phones({client: None for client in owners})
    import_bindings(BindingSpec(client_id=client, box_id=box, locale="en")
                    for client, boxes in owners.items() for box in boxes)


@dataclass
class Alarm:
    t_ms: int  # event time, ms after START_MS
    box: str
    seq: int = 1
    cause: str = "overtemp"

    def payload(self) -> dict[str, Any]:
        return {"v": 1, "seq": self.seq, "cause": self.cause, "value": 91.5, "threshold": 85,
                "alarm_time": START_MS + self.t_ms}


def publish_alarm(sb: Sandbox, alarm: Alarm) -> list[Delivery]:
    """The box publishes on its topic at its alarm time (IoT receives it at once)."""
    sb.now_ms = START_MS + alarm.t_ms
    return sb.publish_mqtt(f"boxwatch/boxes/{alarm.box}/alarms", alarm.payload(), alarm.box, sb.now_ms)


def rule_event(sb: Sandbox, alarm: Alarm) -> dict[str, Any]:
    """What AlarmIngestRule would hand AlarmIngest for this alarm (to feed the baseline)."""
    sb.now_ms = START_MS + alarm.t_ms
    ctx = MessageContext(topic=f"boxwatch/boxes/{alarm.box}/alarms", payload=alarm.payload(),
                         client_id=alarm.box, now_ms=sb.now_ms)
    for rule in sb.rules:
        event = rule.apply(ctx)
        if event is not None and rule.function == "AlarmIngestFunction":
            return dict(event)
    raise LookupError("no rule routes alarm topics to AlarmIngest")
