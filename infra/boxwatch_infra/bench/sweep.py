"""Sweep: what one scheduled OfflineSweep reads, and how long it takes, as the fleet grows with a
fixed number of boxes offline (10) and with an area outage (1% and 10% of the fleet offline).

The fleet keeps a constant density (a ~200 m grid, growing in area with its size), so that a
fixed outage has the same surroundings in every fleet: what remains is the fleet's own size.
Boxes go offline as the Presence function leaves them (status on the box, an entry in the offline
index), written in bulk (BatchWriteItem) rather than through 10,000 lifecycle events; the sweep is
the real handler on its scheduled event, one sweep interval after the outage.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import Any

from pynamodb.models import Model

from boxwatch.models import BoxItem
from boxwatch.network import PresenceEvent, lifecycle_items
from boxwatch.registry import BoxSpec, box_item
from boxwatch_infra.aws import events
from boxwatch_infra.aws.moto_patches import faster_moto
from boxwatch_infra.bench.connection import reused_connection
from boxwatch_infra.bench.fleet import START_MS, load_boxes
from boxwatch_infra.bench.recorder import Recorder
from boxwatch_infra.sandbox import Sandbox

CENTRE = (39.9, 116.4)
STEP_LAT, STEP_LNG = 0.0018, 0.0023  # ~200 m at Beijing's latitude


def grid_fleet(n: int) -> list[BoxSpec]:
    side = math.ceil(math.sqrt(n))
    lat0 = CENTRE[0] - side / 2 * STEP_LAT
    lng0 = CENTRE[1] - side / 2 * STEP_LNG
    return [BoxSpec(id=f"SW-{i:06d}", name=f"box {i}", address="", lat=lat0 + (i // side) * STEP_LAT,
                    lng=lng0 + (i % side) * STEP_LNG) for i in range(n)]


def nearest(specs: list[BoxSpec], k: int) -> list[BoxSpec]:
    """The k boxes nearest the centre: one contiguous area goes dark."""
    def cells_away(s: BoxSpec) -> float:
        return ((s.lat - CENTRE[0]) / STEP_LAT) ** 2 + ((s.lng - CENTRE[1]) / STEP_LNG) ** 2

    return sorted(specs, key=cells_away)[:k]


def take_offline(sb: Sandbox, dark: list[BoxSpec], at_ms: int) -> None:
    """What Presence writes for each disconnect: the box's status, its log row, arrival entry and
    offline episode (BatchWriteItem, one writer per item type)."""
    rows: dict[type[Model], list[Model]] = defaultdict(list)
    with BoxItem.batch_write() as boxes:
        for i, spec in enumerate(dark):
            t = at_ms + (i % 20) * 1000  # the area drops within 20 s
            event = PresenceEvent.model_validate({"clientId": spec.id, "eventType": "disconnected", "timestamp": t,
                                                  "versionNumber": 1, "disconnectReason": "MQTT_KEEP_ALIVE_TIMEOUT"})
            item = box_item(spec, sb.settings)
            item.online, item.status_since, item.status_reason, item.presence_version = (
                False, t, event.disconnect_reason, 1)
            boxes.save(item)
            for row in lifecycle_items(item, event):
                rows[type(row)].append(row)
    for model, items in rows.items():
        with model.batch_write() as batch:
            for row in items:
                batch.save(row)


def scheduled_event(sb: Sandbox, at_ms: int) -> dict[str, Any]:
    return events.scheduled_event(at_ms, sb.template.account_id, sb.template.region, f"bench-sweep-{at_ms}", [])


def run_case(n: int, offline: int, label: str) -> dict[str, Any]:
    specs = grid_fleet(n)
    with Sandbox() as sb, faster_moto(), reused_connection():
        t = time.perf_counter()
        load_boxes(sb, iter(specs))
        outage_at = START_MS + 30_000
        take_offline(sb, nearest(specs, offline), outage_at)
        setup_s = time.perf_counter() - t
        at_ms = outage_at + sb.settings.sweep_interval_s * 1000 + 30_000  # the first sweep after the outage
        sb.now_ms = at_ms
        recorder = Recorder(sb)
        with recorder.recording() as totals:
            t = time.perf_counter()
            result = sb.invoke("OfflineSweep", scheduled_event(sb, at_ms))
            wall_s = time.perf_counter() - t
        snap = totals.snapshot()
        return {"fleet": n, "offline": offline, "offline_label": label, "setup_s": round(setup_s, 2),
                "wall_s": round(wall_s, 3), "dynamodb_requests": snap["dynamodb_requests"],
                "items_read": snap["items_read"], "rcu": snap["rcu"], "wcu": snap["wcu"],
                "sns_publishes": snap["sns_publishes"], "operations": snap["operations"],
                "result": {k: (len(v) if isinstance(v, list) else v) for k, v in (result or {}).items()}
                if isinstance(result, dict) else result}


def available(template: Any) -> str | None:
    """None when the sweep can be measured, else why not."""
    try:
        spec = template.function("OfflineSweep")
    except KeyError:
        return "the template has no OfflineSweep function"
    if not (spec.code_dir / "app.py").exists():
        return f"{spec.code_dir.name}/app.py does not exist"
    return None


def run(fleets: list[int], max_offline: int) -> dict[str, Any]:
    """Every (fleet, offline) case up to `max_offline` offline boxes: in moto each request costs
    ~10 ms and a sweep makes a few per offline box, so larger outages are left out (and said so)."""
    from boxwatch_infra.aws.template import Template

    reason = available(Template())
    if reason:
        return {"not_measured": reason}
    cases: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for n in fleets:
        for offline, label in ((10, "10"), (max(2, n // 100), "1%"), (max(2, n // 10), "10%")):
            if offline > max_offline:
                skipped.append({"fleet": n, "offline": offline, "offline_label": label,
                                "not_measured": f"{offline:,} offline boxes: several requests each at ~10 ms in "
                                                f"moto, beyond the run's time budget (cap {max_offline:,})"})
            else:
                cases.append(run_case(n, offline, label))
    return {"cases": cases, "skipped": skipped}
