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

from boxwatch import outage
from boxwatch.models import INDEX_SHARDS, ArrivalEntry, BoxItem, OfflineEntry, PresenceLogItem
from boxwatch.network import PresenceEvent, lifecycle_items
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


def cluster_cpu(n: int = 3_000, spacing_m: float = 60.0, seed: int = 5) -> dict[str, Any]:
    """The clustering of `n` dropped boxes on a grid (one contiguous blackout), timed for real and
    scaled to DARK: at a constant density the work is linear in the boxes (each checks the boxes
    of its covering cells). 100,000 did not finish within 9 minutes on this machine."""
    side = math.ceil(math.sqrt(n))
    dlat = spacing_m / 111_195
    dlng = spacing_m / (111_195 * math.cos(math.radians(39.9)))
    rng = random.Random(seed)
    cands = [outage.Candidate(f"BO-{i:07d}", "", 39.9 + (i // side) * dlat, 116.3 + (i % side) * dlng,
                              START_MS + rng.randrange(WINDOW_MS), version=2) for i in range(n)]
    t = time.process_time()
    groups = outage.cluster(cands, 500.0, 60)
    cpu_s = time.process_time() - t
    return {"points": n, "spacing_m": spacing_m, "clusters": len(groups), "largest": max(len(g) for g in groups),
            "cpu_s": round(cpu_s, 2), "cpu_s_at_dark": round(cpu_s * DARK / n, 1),
            "how": f"run for real at {n:,} points (pure function, this machine), scaled linearly to {DARK:,}"}


def _sweep_case(n_fleet: int, n_dark: int) -> dict[str, Any]:
    """One real sweep after `n_dark` boxes of an `n_fleet` grid fleet dropped (moto, counted)."""
    from boxwatch_infra.aws.moto_patches import faster_moto
    from boxwatch_infra.bench.connection import reused_connection
    from boxwatch_infra.bench.fleet import bind_owners, load_boxes
    from boxwatch_infra.bench.recorder import Recorder
    from boxwatch_infra.bench.sweep import grid_fleet, nearest, scheduled_event, take_offline
    from boxwatch_infra.sandbox import Sandbox, decode_push

    specs = grid_fleet(n_fleet)
    with Sandbox() as sb, faster_moto(), reused_connection():
        load_boxes(sb, iter(specs))
        dark = nearest(specs, n_dark) if n_dark else []
        ring = nearest(specs, n_dark + max(50, n_dark // 2))[n_dark:] if n_dark else specs[:50]
        bind_owners(sb, {f"owner-{s.id}": [s.id] for s in ring})  # the online boxes around the dark area
        outage_at = START_MS + 30_000
        if dark:
            take_offline(sb, dark, outage_at)
        at_ms = outage_at + sb.settings.sweep_interval_s * 1000 + 30_000
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
            "pushes": dict(kinds), "max_pushes_per_client_kind": max(per_client.values(), default=0),
            "clients_bound": len(ring), "told": len({arn for arn, _ in per_client}),
            "storms": len(result.get("storms", [])) if isinstance(result, dict) else None}


def quiet(fleets: tuple[int, ...] = (1_000, 20_000)) -> dict[str, Any]:
    cases = [_sweep_case(n, 0) for n in fleets]
    return {"cases": cases, "how": f"run for real at {', '.join(f'{n:,}' for n in fleets)} boxes; "
            f"{FLEET:,} computed: no request of a quiet sweep reads a box or depends on the fleet"}


def blackout(fleet: int = 2_000, dark: tuple[int, int] = (200, 300)) -> dict[str, Any]:
    """Two real blackout sweeps; the requests per extra offline box, extrapolated to DARK."""
    small, large = (_sweep_case(fleet, d) for d in dark)
    per_box = (large["dynamodb_requests"] - small["dynamodb_requests"]) / (dark[1] - dark[0])
    fixed = small["dynamodb_requests"] - per_box * dark[0]
    # the shard reads run side by side: of each 16 index Queries one is on the chain (at most 2
    # arrival buckets of drops, 2 of connects, 3 minute buckets of episodes)
    parallel = (INDEX_SHARDS - 1) * (2 + 2 + 3)
    requests = fixed + per_box * DARK
    chain = max(0.0, requests - parallel)
    cpu = cluster_cpu()
    seconds = chain * REQUEST_MS / 1000 + cpu["cpu_s_at_dark"]
    return {"cases": [small, large], "per_offline_box": round(per_box, 3), "fixed": round(fixed, 1),
            "extrapolated_requests": round(requests), "chain_requests": round(chain), "request_ms": REQUEST_MS,
            "cluster_cpu": cpu, "decided_in_s": round(seconds, 1), "interval_s": 60,
            "how": f"run for real at {dark[0]:,} and {dark[1]:,} offline of {fleet:,}; {DARK:,} computed "
                   f"(requests linear in the offline boxes, {REQUEST_MS:g} ms each, one worker) + clustering CPU"}


def run(quick: bool = False) -> dict[str, Any]:
    return {"ingest": ingest(20_000 if quick else DARK, WINDOW_MS // 5 if quick else WINDOW_MS),
            "quiet": quiet((1_000, 2_000) if quick else (1_000, 4_000)),
            # above StormMinBoxes (200) in both cases: the same mode, so the difference is per box
            "blackout": blackout(1_500, (200, 250)) if quick else blackout(2_000, (200, 300))}


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=1))
