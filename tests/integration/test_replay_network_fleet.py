"""Issue 3: a sweep's DynamoDB reads follow the boxes that changed state, not the fleet.

The same ten boxes go offline (a cluster of three, a cluster of two, five alone) in a fleet of
1,000 and of 50,000 boxes; the fleets share the same ~200 m grid around them. We count the
requests the OfflineSweep function makes (moto's GSI queries scan internally, so time says
nothing; requests are what DynamoDB bills and throttles).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from boxwatch.registry import BindingSpec, BoxSpec, bind, import_boxes
from boxwatch_infra.aws.events import lifecycle_event
from boxwatch_infra.sandbox import Sandbox

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
READS = ("Query", "GetItem", "BatchGetItem", "Scan")
GRID_LAT, GRID_LNG = 0.0018, 0.0023  # ~200 m both ways near 39.5 N
# (id, row, col, offline at s): positions on the grid, inside the 1,000-box fleet's 32 x 32 corner
OFFLINE = [
    ("CL-A1", 10, 10, 100), ("CL-A2", 10, 11, 120), ("CL-A3", 11, 11, 140),  # cluster of three
    ("CL-B1", 20, 25, 110), ("CL-B2", 21, 25, 150),  # cluster of two
    ("LONE-1", 5, 25, 100), ("LONE-2", 25, 5, 130), ("LONE-3", 28, 28, 160), ("LONE-4", 2, 2, 170),
    ("LONE-5", 16, 18, 190),
]
SWEEP_S = 60
SWEEPS = range(SWEEP_S, 601, SWEEP_S)
RECONNECT_S = 400  # cluster A comes back: the sweep resolves its incident


def position(row: int, col: int) -> tuple[float, float]:
    # half a cell off the grid so that an offline box never sits on a fleet box
    return 39.5 + (row + 0.5) * GRID_LAT, 116.0 + (col + 0.5) * GRID_LNG


def fleet(n_boxes: int) -> tuple[list[BoxSpec], int]:
    side = math.ceil(math.sqrt(n_boxes))
    specs = [BoxSpec(id=box, name=box, address="", lat=position(r, c)[0], lng=position(r, c)[1])
             for box, r, c, _ in OFFLINE]
    specs += [
        BoxSpec(id=f"BX-{i:06d}", name=f"box {i}", address="",
                lat=39.5 + (i // side) * GRID_LAT, lng=116.0 + (i % side) * GRID_LNG)
        for i in range(n_boxes - len(OFFLINE))
    ]
    return specs, side


@dataclass
class SweepCost:
    operations: Counter[str] = field(default_factory=Counter)
    items: int = 0  # items DynamoDB returned to the sweep's reads
    pushes: int = 0
    resolved: list[str] = field(default_factory=list)

    @property
    def reads(self) -> int:
        return sum(n for op, n in self.operations.items() if op.split(".")[1] in READS)


def sweep_cost(n_boxes: int) -> SweepCost:
    cost = SweepCost()
    with Sandbox(parameter_overrides={"SweepIntervalS": SWEEP_S}) as sb:
        specs, side = fleet(n_boxes)
        for _ in import_boxes(specs, sb.settings):
            pass
        # a client on each grid box next to an offline box (same boxes in both fleets)
        endpoints = sb.create_push_endpoints([box for box, *_ in OFFLINE])
        for box, r, c, _ in OFFLINE:
            bind(BindingSpec(client_id=box, box_id=f"BX-{r * side + c:06d}", target=endpoints[box], locale="en"))

        def items_read(service: str, operation: str, params: dict[str, Any], call: Any) -> Any:
            out = call()
            if service == "dynamodb" and sweeping and operation in READS:
                cost.items += out.get("Count", 0) + sum(len(v) for v in out.get("Responses", {}).values())
            return out

        sweeping = False
        sb.counter.interceptors.append(items_read)
        timeline = sorted([(t, 0, ("disconnected", box)) for box, _, _, t in OFFLINE]
                          + [(RECONNECT_S, 0, ("connected", box)) for box, *_ in OFFLINE[:3]]
                          + [(t, 1, None) for t in SWEEPS], key=lambda x: (x[0], x[1]))
        for t, _, what in timeline:
            now = START_MS + t * 1000
            sb.now_ms = now
            if what is None:
                before = Counter(sb.counter.operations)
                sweeping = True
                time = datetime.fromtimestamp(now / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                result = sb.invoke("OfflineSweep", {"detail-type": "Scheduled Event", "source": "aws.events",
                                                    "time": time, "detail": {}})
                sweeping = False
                cost.operations += sb.counter.operations - before
                cost.resolved += result["resolved"]
            else:
                kind, box = what
                doc = lifecycle_event(box, kind, now, 2 if kind == "disconnected" else 3, 1,
                                      "CONNECTION_LOST" if kind == "disconnected" else None)
                sb.publish_mqtt(f"$aws/events/presence/{kind}/{box}", doc, "", now)
        cost.pushes = sum(len(m) for m in sb.pushed_messages().values())
    return cost


@pytest.mark.slow
def test_sweep_reads_do_not_grow_with_the_fleet() -> None:
    # Given the same 10 boxes offline in a fleet of 1,000 and one of 50,000
    small = sweep_cost(1_000)
    large = sweep_cost(50_000)
    print(f"\nsweep reads over {len(SWEEPS)} sweeps: 1k {small.reads} requests / {small.items} items "
          f"{dict(small.operations)}; 50k {large.reads} requests / {large.items} items {dict(large.operations)}")
    # Then the sweeps make the same reads, within a small constant, and never scan
    assert abs(large.reads - small.reads) <= 2, (small.operations, large.operations)
    assert not any(op.endswith(".Scan") for op in {**small.operations, **large.operations})
    # and they found the same two clusters: the same neighbours warned, cluster A resolved
    assert small.pushes == large.pushes > 0
    assert small.resolved == large.resolved == [f"{START_MS + 100_000:013d}-CL-A1"]
