"""Per alarm: DynamoDB requests, items read, capacity units and SNS publishes, for fleets of
growing size, ours (H3 cell index) against the naive baseline (Scan of the boxes)."""

from __future__ import annotations

import itertools
import time
from typing import Any

from boxwatch.registry import BoxSpec
from boxwatch_infra.aws.moto_patches import faster_moto
from boxwatch_infra.bench.baseline import naive_lookup
from boxwatch_infra.bench.connection import reused_connection
from boxwatch_infra.bench.fleet import ALARMING, Alarm, bind_owners, city_boxes, load_boxes, publish_alarm
from boxwatch_infra.bench.recorder import Recorder, Totals
from boxwatch_infra.sandbox import Sandbox

DAY_MS = 86_400_000


def _alarms(t0_ms: int, seq: int) -> list[Alarm]:
    return [Alarm(t0_ms + 10_000 * i, f"AL-{i}", seq=seq) for i in range(len(ALARMING))]


def _per_alarm(totals: Totals, n: int) -> dict[str, Any]:
    snap = totals.snapshot()
    return {"dynamodb_requests": snap["dynamodb_requests"] / n, "items_read": snap["items_read"] / n,
            "rcu": snap["rcu"] / n, "wcu": snap["wcu"] / n, "sns_publishes": snap["sns_publishes"] / n,
            "operations": {k: v / n for k, v in snap["operations"].items()}}


def run_fleet(n_boxes: int) -> dict[str, Any]:
    # counts only: moto made partition-local and one pynamodb Connection reused (same requests)
    with Sandbox() as sb, faster_moto(), reused_connection():
        t = time.perf_counter()
        alarming = [BoxSpec(id=f"AL-{i}", name=f"alarming {i}", address="", lat=lat, lng=lng)
                    for i, (lat, lng) in enumerate(ALARMING)]
        load_boxes(sb, itertools.chain(alarming, city_boxes(n_boxes - len(alarming))))
        load_s = time.perf_counter() - t
        bind_owners(sb, {f"owner-{i}": [f"AL-{i}"] for i in range(len(ALARMING))})
        recorder = Recorder(sb)

        ours_alarms = _alarms(0, seq=1)
        with recorder.recording() as ours:
            t = time.perf_counter()
            results = [d.result for a in ours_alarms for d in publish_alarm(sb, a)]
            ours_s = time.perf_counter() - t
        if any(not isinstance(r, dict) or r.get("status") != "stored" for r in results):
            raise RuntimeError(f"AlarmIngest did not store every alarm: {results}")

        # the baseline's alarms a day later (outside our alarms' window): same boxes, same neighbours
        base_alarms = _alarms(DAY_MS, seq=2)
        with recorder.recording() as base, naive_lookup():
            t = time.perf_counter()
            base_results = [d.result for a in base_alarms for d in publish_alarm(sb, a)]
            base_s = time.perf_counter() - t
        if any(not isinstance(r, dict) or r.get("status") != "stored" for r in base_results):
            raise RuntimeError(f"AlarmIngest (baseline lookup) did not store every alarm: {base_results}")
        n = len(ours_alarms)
        return {
            "fleet": n_boxes, "alarms": n, "load_s": round(load_s, 2),
            "ours": {**_per_alarm(ours, n), "wall_s": round(ours_s, 3)},
            "baseline": {**_per_alarm(base, n), "wall_s": round(base_s, 3)},
            "same_cause_notifications": {"ours": ours.requests["sns.Publish"] - n,
                                         "baseline": base.requests["sns.Publish"] - n},
        }


def run(fleets: list[int]) -> dict[str, Any]:
    return {"fleets": [run_fleet(n) for n in fleets]}
