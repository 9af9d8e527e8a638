"""Blackout: a substation trips and 100,000 boxes of a 1,000,000-box fleet drop within one minute.

What moto cannot run at that size is counted or computed, and said so:

- **ingest** (counted from the real code): the items Presence writes for each disconnect
  (`network.lifecycle_items` + the box's status, one TransactWriteItems: 2 WCU per item), keyed by
  the real key functions, at their event (arrival) time; the busiest partition key's WCU in any
  1 s window, sharded as shipped and, for comparison, with the shards folded back into one key.
- **quiet sweep** (run for real): one sweep with nothing offline in fleets of growing size.
- **blackout sweep** (run for real at a scale moto can take, then computed): a contiguous area of
  a grid fleet drops, the real OfflineSweep runs once; its requests are split into those that grow
  with the offline boxes and the fixed rest, extrapolated to 100,000, and turned into time with a
  per-request latency (below) plus the clustering's CPU time, measured for real on 100,000 points.

Latency: `REQUEST_MS` = 6 ms per DynamoDB request from a Lambda in the same region. AWS states
single-digit millisecond average latency for atomic operations such as GetItem and PutItem
(AWS re:Post Knowledge Center, "Why is my DynamoDB request latency high?",
https://repost.aws/knowledge-center/dynamodb-high-latency); 6 ms adds the Lambda-to-endpoint hop.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from typing import Any

from boxwatch import geo, incidents, outage
from boxwatch.models import INDEX_SHARDS, ArrivalEntry, BoxItem, OfflineEntry, PresenceLogItem
from boxwatch.network import PresenceEvent, lifecycle_items
from boxwatch.settings import Settings
from boxwatch_infra.bench.capacity import item_size, peak_rate, write_units

REQUEST_MS = 6.0
FLEET = 1_000_000
DARK = 100_000
WINDOW_MS = 60_000
START_MS = 1_767_225_600_000


def _event(box_id: str, t: int) -> PresenceEvent:
    return PresenceEvent.model_validate({"clientId": box_id, "eventType": "disconnected", "timestamp": t,
                                         "versionNumber": 2, "disconnectReason": "MQTT_KEEP_ALIVE_TIMEOUT",
                                         "received_at": t + 150})


def ingest(n_dark: int = DARK, window_ms: int = WINDOW_MS, seed: int = 3, sized: int = 200) -> dict[str, Any]:
    """Partition-key write rates of `n_dark` disconnects spread uniformly over `window_ms`.

    The first `sized` disconnects build their items with `lifecycle_items` (sizes and keys); the
    rest take the keys from the same models' key functions and the largest size seen per item type
    (building 300,000 pynamodb items costs minutes here and gives the same keys)."""
    rng = random.Random(seed)
    writes: list[tuple[int, str, float]] = []
    folded: list[tuple[int, str, float]] = []
    units_of: dict[str, float] = {}
    for i in range(n_dark):
        box_id = f"BO-{i:07d}"
        event = _event(box_id, START_MS + rng.randrange(window_ms))
        if i < sized:
            box = BoxItem(box_id, name=f"box {i}", address="", lat=39.9 + rng.random() * 0.2,
                          lng=116.3 + rng.random() * 0.2, timezone="Asia/Shanghai")
            keyed = []
            for item in lifecycle_items(box, event):
                kind = type(item).__name__
                units_of[kind] = max(units_of.get(kind, 0.0), write_units(item_size(item.serialize()), True))
                keyed.append((str(getattr(item, "pk")), units_of[kind]))  # noqa: B009 - pynamodb's attribute
        else:
            keyed = [(PresenceLogItem.key(box_id, 2, False)[0], units_of["PresenceLogItem"]),
                     (ArrivalEntry.key(event.arrived_at, box_id, 2, False)[0], units_of["ArrivalEntry"]),
                     (OfflineEntry.key(event.timestamp, box_id, 2)[0], units_of["OfflineEntry"])]
        keyed.append((f"box:{box_id}", 2.0))  # the box's status, in the same transaction
        for pk, units in keyed:
            writes.append((event.arrived_at, pk, units))
            # the key before sharding, for comparison
            folded.append((event.arrived_at, pk.rsplit("#", 1)[0] if pk.startswith(("OFF#", "ARR#")) else pk, units))
    key, peak = peak_rate(writes)
    old_key, old_peak = peak_rate(folded)
    return {"disconnects": n_dark, "window_s": window_ms / 1000, "shards": INDEX_SHARDS,
            "busiest_key": key, "busiest_wcu_per_s": round(peak, 1),
            "unsharded_key": old_key, "unsharded_wcu_per_s": round(old_peak, 1),
            "keys_written": len({k for _, k, _ in writes}),
            "how": "counted: real key functions and item sizes (transactional: 2 WCU per KB), event time"}


def cluster_cpu(n: int = DARK, spacing_m: float = 60.0, seed: int = 5) -> dict[str, Any]:
    """The clustering of `n` dropped boxes on a dense grid (one contiguous blackout, 60 m apart:
    more pairs per cell than the fleet's 200 m), timed for real (pure function, this machine)."""
    side = math.ceil(math.sqrt(n))
    dlat = spacing_m / 111_195
    dlng = spacing_m / (111_195 * math.cos(math.radians(39.9)))
    rng = random.Random(seed)
    cands = [incidents.Candidate(f"BO-{i:07d}", "", 39.9 + (i // side) * dlat, 116.3 + (i % side) * dlng,
                              START_MS + rng.randrange(WINDOW_MS), version=2) for i in range(n)]
    t = time.process_time()
    groups = outage.cluster(cands, 500.0, 60)
    cpu_s = time.process_time() - t
    return {"points": n, "spacing_m": spacing_m, "clusters": len(groups), "largest": max(len(g) for g in groups),
            "cpu_s": round(cpu_s, 2), "how": f"run for real at {n:,} points (pure function, this machine)"}


def _sweep_case(n_fleet: int, n_dark: int, fan_out: int | None = None) -> dict[str, Any]:
    """One real sweep after `n_dark` boxes of an `n_fleet` grid fleet dropped (moto, counted); with
    `fan_out`, incidents of that many members are told by OutageNotify (drained by the sandbox)."""
    from boxwatch_infra.aws.moto_patches import faster_moto
    from boxwatch_infra.bench.connection import reused_connection
    from boxwatch_infra.bench.fleet import bind_owners, load_boxes
    from boxwatch_infra.bench.recorder import Recorder
    from boxwatch_infra.bench.sweep import grid_fleet, nearest, scheduled_event, take_offline
    from boxwatch_infra.sandbox import Sandbox, decode_push

    specs = grid_fleet(n_fleet)
    overrides = {"SweepFanOutMembers": fan_out} if fan_out else {}
    with Sandbox(parameter_overrides=overrides) as sb, faster_moto(), reused_connection():
        load_boxes(sb, iter(specs))
        dark = nearest(specs, n_dark) if n_dark else []
        ring = nearest(specs, n_dark + max(50, n_dark // 2))[n_dark:] if n_dark else specs[:50]
        bind_owners(sb, {f"owner-{s.id}": [s.id] for s in ring})  # the online boxes around the dark area
        outage_at = START_MS + 30_000
        if dark:
            take_offline(sb, dark, outage_at)
        # the first sweep after the drops (within 20 s), before their late third-alarm checks are due
        # (one interval after each arrival): what it costs to decide, not to re-check third alarms
        at_ms = outage_at + 50_000
        sb.now_ms = at_ms
        with Recorder(sb).recording() as totals:
            t = time.perf_counter()
            result = sb.invoke("OfflineSweep", scheduled_event(sb, at_ms))
            wall_s = time.perf_counter() - t
        snap = totals.snapshot()
        kinds: Counter[str] = Counter()
        per_client: Counter[tuple[str, str]] = Counter()  # (endpoint: one per client, kind)
        for arn, messages in sb.pushed_messages().items():
            for m in messages:
                kind = str(decode_push(m).get("kind"))
                kinds[kind] += 1
                per_client[(arn, kind)] += 1
    return {"fleet": n_fleet, "offline": n_dark, "dynamodb_requests": snap["dynamodb_requests"],
            "operations": snap["operations"], "sns_publishes": snap["sns_publishes"], "wall_s": round(wall_s, 2),
            "threads": dict(totals.threads), "parts": sum(result.get("parts", {}).values()),
            "pushes": dict(kinds), "max_pushes_per_client_kind": max(per_client.values(), default=0),
            "clients_bound": len(ring), "told": len({arn for arn, _ in per_client}),
            "storms": len(result.get("storms", [])) if isinstance(result, dict) else None}


def quiet(fleets: tuple[int, ...] = (1_000, 20_000)) -> dict[str, Any]:
    cases = [_sweep_case(n, 0) for n in fleets]
    return {"cases": cases, "how": f"run for real at {', '.join(f'{n:,}' for n in fleets)} boxes; "
            f"{FLEET:,} computed: no request of a quiet sweep reads a box or depends on the fleet"}


def _chain(case: dict[str, Any], function: str) -> float:
    """Sequential requests of a function's invocations: those on its own thread, plus its read
    pool's (incidents.READ_THREADS side by side)."""
    threads = case["threads"]
    return threads.get(f"{function}:main", 0) + threads.get(f"{function}:pool", 0) / incidents.READ_THREADS


def _parts_at_scale(settings: Settings) -> dict[str, Any]:
    """The fan-out of the 100,000-box blackout in the 1,000,000-box grid fleet (bench.sweep's grid,
    200 m apart), planned by the real `outage.plan_parts`: how many parts, and how many online
    boxes within the radius of a member (recipients, one client each as in the runs) the largest holds."""
    from boxwatch_infra.bench.sweep import CENTRE, STEP_LAT, STEP_LNG

    radius_steps = math.sqrt(DARK / math.pi)
    margin = math.ceil(settings.outage_radius_m / 200) + 2
    k = math.ceil(radius_steps) + margin
    points = sorted((i * i + j * j, i, j) for i in range(-k, k + 1) for j in range(-k, k + 1))
    dark = [incidents.Candidate(f"D{i}_{j}", "", CENTRE[0] + i * STEP_LAT, CENTRE[1] + j * STEP_LNG, START_MS)
            for _, i, j in points[:DARK]]
    plan = outage.plan_parts(dark, settings)
    nearest = incidents.nearest_member(dark, settings)
    per_part: Counter[str] = Counter()
    for _, i, j in points[DARK:]:
        lat, lng = CENTRE[0] + i * STEP_LAT, CENTRE[1] + j * STEP_LNG
        if nearest(lat, lng) is not None:
            per_part[geo.parent_of(geo.cell_of(lat, lng, settings.area_res), settings.sweep_part_res)] += 1
    return {"parts": len(plan), "parts_with_recipients": len(per_part), "recipients": sum(per_part.values()),
            "largest_part_recipients": max(per_part.values(), default=0)}


def blackout(fleet: int = 2_000, dark: tuple[int, int] = (200, 300), fan_out: int = 100) -> dict[str, Any]:
    """Two real blackout sweeps that fan out; the coordinator's requests per extra offline box and
    each worker's per part and per recipient, computed for DARK with the real part plan."""
    small, large = (_sweep_case(fleet, d, fan_out) for d in dark)
    sweep_fn, worker_fn = "OfflineSweepFunction", "OutageNotifyFunction"
    per_box = (_chain(large, sweep_fn) - _chain(small, sweep_fn)) / (dark[1] - dark[0])
    fixed = _chain(small, sweep_fn) - per_box * dark[0]
    # each worker's chain = per_part + per_recipient x its recipients (two runs, two unknowns)
    (p1, r1, w1), (p2, r2, w2) = ((c["parts"], c["told"], _chain(c, worker_fn)) for c in (small, large))
    det = p1 * r2 - p2 * r1
    per_part = (w1 * r2 - w2 * r1) / det if det else w1 / max(1, p1)
    per_recipient = (p1 * w2 - p2 * w1) / det if det else 0.0
    settings = Settings()
    scale = _parts_at_scale(settings)
    coordinator = fixed + per_box * DARK + math.ceil(scale["parts"] / 10)  # + SendMessageBatch, 10 parts each
    worker = per_part + per_recipient * scale["largest_part_recipients"]
    cpu = cluster_cpu()
    seconds = (coordinator + worker) * REQUEST_MS / 1000 + cpu["cpu_s"]
    interval = settings.sweep_interval_s
    return {"cases": [small, large], "coordinator_per_offline_box": round(per_box, 4),
            "coordinator_fixed": round(fixed, 1), "coordinator_chain": round(coordinator),
            "worker_per_part": round(per_part, 1), "worker_per_recipient": round(per_recipient, 2),
            "at_scale": scale, "worker_chain": round(worker), "request_ms": REQUEST_MS, "cluster_cpu": cpu,
            "decided_in_s": round(seconds, 1), "interval_s": interval, "within_2_intervals": seconds <= 2 * interval,
            "how": f"run for real at {dark[0]:,} and {dark[1]:,} offline of {fleet:,} (fan-out from {fan_out} "
                   f"members); {DARK:,} computed: the sweep's chain (its own thread + its read pool / "
                   f"{incidents.READ_THREADS}) linear in the offline boxes, then the longest worker's (parts from "
                   f"the real plan of the 1M-box grid), {REQUEST_MS:g} ms a request, + clustering CPU at {DARK:,}"}


def run(quick: bool = False) -> dict[str, Any]:
    return {"ingest": ingest(20_000 if quick else DARK, WINDOW_MS // 5 if quick else WINDOW_MS),
            "quiet": quiet((1_000, 2_000) if quick else (1_000, 4_000)),
            # above StormMinBoxes (200) in both cases: the same mode, so the difference is per box
            "blackout": blackout(1_500, (200, 250)) if quick else blackout(2_000, (200, 300))}


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=1))
