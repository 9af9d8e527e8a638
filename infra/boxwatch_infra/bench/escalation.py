"""Escalation sweep: what one scheduled AlarmSweep reads and sends when 100 alarms are due for
their reminder, as the fleet grows (1k -> 100k boxes). Requests are counted, not timed: the
sweep's cost must follow the due escalation steps (the sparse `due_by_time` index), never the
fleet or its history.

Each of the 100 alarming boxes has one client; the alarms go through the real AlarmIngest (which
opens each alarm and writes its chain), the sweep is the real AlarmSweep at first_at +
EscalateAfterS. A second sweep at the same instant (nothing left due) shows the idle cost.
"""

from __future__ import annotations

import itertools
from typing import Any

from boxwatch.registry import BoxSpec
from boxwatch_infra.aws import events
from boxwatch_infra.aws.moto_patches import faster_moto
from boxwatch_infra.bench.connection import reused_connection
from boxwatch_infra.bench.fleet import START_MS, Alarm, bind_owners, city_boxes, load_boxes, publish_alarm
from boxwatch_infra.bench.recorder import Recorder
from boxwatch_infra.sandbox import Sandbox

UNACKED = 100


def run_fleet(n_boxes: int, unacked: int = UNACKED) -> dict[str, Any]:
    with Sandbox() as sb, faster_moto(), reused_connection():
        # 2 km apart: no neighbours, so each alarm costs what a lone alarm costs
        alarming = [BoxSpec(id=f"ES-{i:04d}", name=f"alarming {i}", address="", lat=39.5 + (i // 10) * 0.02,
                            lng=116.0 + (i % 10) * 0.03) for i in range(unacked)]
        load_boxes(sb, itertools.chain(alarming, city_boxes(n_boxes - unacked)))
        bind_owners(sb, {f"owner-{i}": [b.id] for i, b in enumerate(alarming)})
        for i, b in enumerate(alarming):
            [d] = publish_alarm(sb, Alarm(i * 10, b.id))  # within one second: all due at one sweep
            if not isinstance(d.result, dict) or d.result.get("status") != "stored":
                raise RuntimeError(f"AlarmIngest did not store {b.id}'s alarm: {d.result}")
        at_ms = START_MS + unacked * 10 + sb.settings.escalate_after_s * 1000 + 60_000
        sb.now_ms = at_ms
        recorder = Recorder(sb)
        out: dict[str, Any] = {"fleet": n_boxes, "unacked": unacked}
        for name in ("due", "idle"):
            event = events.scheduled_event(at_ms, sb.template.account_id, sb.template.region,
                                           f"bench-escalation-{name}", [])
            with recorder.recording() as totals:
                result = sb.invoke("AlarmSweep", event)
            snap = totals.snapshot()
            out[name] = {"dynamodb_requests": snap["dynamodb_requests"], "items_read": snap["items_read"],
                         "sns_publishes": snap["sns_publishes"], "operations": snap["operations"],
                         "done": len(result.get("done", [])) if isinstance(result, dict) else None}
        return out


def run(fleets: list[int]) -> dict[str, Any]:
    return {"fleets": [run_fleet(n) for n in fleets]}


if __name__ == "__main__":  # python -m boxwatch_infra.bench.escalation 1000 10000 100000
    import json
    import sys

    print(json.dumps(run([int(a) for a in sys.argv[1:]] or [1_000, 10_000]), indent=2))
