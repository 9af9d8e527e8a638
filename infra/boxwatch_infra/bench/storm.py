"""Storm: a heat wave - thousands of boxes across one city raise overtemp within one minute.

The boxes are spread over an area the size of Beijing municipality (~16,000 km²), so an alarm has
a couple of same-cause neighbours within the radius, as in a city-wide heat wave.

Measures how fast the handlers get through it in-process, what each alarm costs, how many pushes
each client receives, and the busiest DynamoDB partition key's write rate (by event time)
against the 1,000 WCU/s a single partition takes.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections import Counter
from typing import Any

from boxwatch_infra.aws.moto_patches import faster_moto
from boxwatch_infra.bench.capacity import PARTITION_WCU_PER_S, peak_rate, percentile
from boxwatch_infra.bench.connection import reused_connection
from boxwatch_infra.bench.fleet import MUNICIPALITY, Alarm, bind_owners, city_boxes, load_boxes, publish_alarm
from boxwatch_infra.bench.recorder import Recorder
from boxwatch_infra.sandbox import Sandbox, decode_push

WINDOW_MS = 60_000


def run(n_alarms: int, n_boxes: int, n_managers: int = 50, boxes_per_manager: int = 20,
        seed: int = 11, shipped_sample: int = 100) -> dict[str, Any]:
    rng = random.Random(seed)
    with Sandbox() as sb, faster_moto():
        t = time.perf_counter()
        specs = list(city_boxes(n_boxes, seed=seed, prefix="ST", area=MUNICIPALITY))
        load_boxes(sb, iter(specs))
        ids = [s.id for s in specs]
        alarming = rng.sample(ids, n_alarms)
        owners: dict[str, list[str]] = {f"owner-{b}": [b] for b in alarming}
        for m in range(n_managers):  # property managers, each bound to a block of boxes
            owners[f"manager-{m}"] = rng.sample(ids, boxes_per_manager)
        bind_owners(sb, owners)
        setup_s = time.perf_counter() - t

        times = sorted(rng.randrange(WINDOW_MS) for _ in alarming)
        alarms = [Alarm(t_ms, box) for t_ms, box in zip(times, alarming, strict=True)]
        recorder = Recorder(sb)
        failed = 0
        n_shipped = min(shipped_sample, len(alarms))
        rates: dict[str, Any] = {}
        with recorder.recording() as totals:
            # a sample as shipped, then (if the shipped code builds a Connection per alarm) the rest
            # with one reused: the same requests, only the client construction differs
            for label, batch, fix in (("as_shipped", alarms[:n_shipped], False),
                                      ("connection_reused", alarms[n_shipped:], True)):
                if not batch:
                    continue
                with reused_connection() if fix else contextlib.nullcontext(False) as patched:
                    if fix and not patched:
                        label = "as_shipped"
                    t = time.perf_counter()
                    for a in batch:
                        for d in publish_alarm(sb, a):
                            if d.error or not isinstance(d.result, dict) or d.result.get("status") != "stored":
                                failed += 1
                    took = time.perf_counter() - t
                r = rates.setdefault(label, {"alarms": 0, "wall_s": 0.0})
                r["alarms"] += len(batch)
                r["wall_s"] += took
        for r in rates.values():
            r["alarms_per_s"] = round(r["alarms"] / r["wall_s"], 1)
            r["wall_s"] = round(r["wall_s"], 2)
        wall_s = sum(r["wall_s"] for r in rates.values())

        # pushes per client, read back from moto's SNS
        endpoint_client = {arn: ep.custom_user_data for arn, ep in _endpoints(sb).items()}
        per_client: Counter[str] = Counter()
        per_client_alarm: Counter[tuple[str, str, str]] = Counter()
        neighbours_listed: list[int] = []
        for arn, messages in sb.pushed_messages().items():
            client = endpoint_client.get(arn, arn)
            for message in messages:
                data = decode_push(message)
                per_client[client] += 1
                per_client_alarm[(client, str(data.get("box")), str(data.get("seq")))] += 1
                if data.get("kind") == "same_cause_nearby":
                    neighbours_listed.append(len(data.get("boxes", [])))
        own_alarms: Counter[str] = Counter()
        alarming_set = set(alarming)
        for client, boxes in owners.items():
            own_alarms[client] = sum(1 for b in boxes if b in alarming_set)
        per_own_alarm = [per_client[c] / own_alarms[c] for c in per_client if own_alarms[c]]

        # partition keys written, by event time
        writes = [(w.t_ms, w.key, 1.0) for w in totals.writes]
        wcus = [(w.t_ms, w.key, w.wcu) for w in totals.writes]
        by_kind: dict[str, Any] = {}
        for kind, marker in (("cell index (CELL#)", ":CELL#"), ("alarm record (BOX#)", ":BOX#")):
            _, peak_w = peak_rate(x for x in writes if marker in x[1])
            key_u, peak_u = peak_rate(x for x in wcus if marker in x[1])
            by_kind[kind] = {"busiest_key": key_u, "peak_writes_per_s": peak_w, "peak_wcu_per_s": peak_u}
        key_u, peak_u = peak_rate(wcus)
        _, peak_w = peak_rate(writes)
        keys_per_cell = {key for _, key, _ in writes}

        n = len(alarms)
        snap = totals.snapshot()
        return {
            "alarms": n, "fleet": n_boxes, "window_s": WINDOW_MS / 1000, "failed": failed,
            "setup_s": round(setup_s, 2), "wall_s": round(wall_s, 2),
            "alarms_per_s": round(n / wall_s, 1), "throughput": rates,
            "dynamodb_requests_per_alarm": snap["dynamodb_requests"] / n,
            "rcu_per_alarm": snap["rcu"] / n, "wcu_per_alarm": snap["wcu"] / n,
            "items_read_per_alarm": snap["items_read"] / n,
            "sns_publishes": snap["sns_publishes"],
            "clients": len(owners),
            "notifications_per_client": {"max": max(per_client.values(), default=0),
                                         "p99": percentile(per_client.values(), 99),
                                         "p50": percentile(per_client.values(), 50)},
            "notifications_per_client_per_own_alarm_max": max(per_own_alarm, default=0.0),
            "pushes_per_client_per_alarm_max": max(per_client_alarm.values(), default=0),
            "neighbours_listed": {"max": max(neighbours_listed, default=0),
                                  "p99": percentile(neighbours_listed, 99)},
            "push_payload_bytes": {"max": max(totals.publish_bytes, default=0),
                                   "p99": percentile(totals.publish_bytes, 99)},
            "busiest_partition": {"key": key_u, "peak_wcu_per_s": peak_u, "peak_writes_per_s": peak_w,
                                  "limit_wcu_per_s": PARTITION_WCU_PER_S, "by_kind": by_kind,
                                  "distinct_keys_written": len(keys_per_cell)},
        }


def _endpoints(sb: Sandbox) -> dict[str, Any]:
    from moto.sns.models import sns_backends

    backend = sns_backends[sb.template.account_id][sb.template.region]
    return dict(backend.platform_endpoints)


def dumps(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=1)


def main(argv: list[str] | None = None) -> int:
    """`python -m boxwatch_infra.bench.storm ALARMS BOXES SAMPLE OUT.json` (the suite runs it in a
    child process, next to the count-only measurements)."""
    import sys
    from pathlib import Path

    args = sys.argv[1:] if argv is None else argv
    n_alarms, n_boxes, sample = (int(a) for a in args[:3])
    Path(args[3]).write_text(dumps(run(n_alarms, n_boxes, shipped_sample=sample)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
