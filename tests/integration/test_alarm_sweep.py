"""AlarmSweep with the real handler and EventBridge-shaped events: flood summaries sent once, at
the first sweep at or after the hold window's end, retried per client, at a cost that follows the
due items and not the fleet (docs/claims.md "Flood hold-down")."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from boxwatch.registry import BoxSpec, import_boxes
from boxwatch_infra.sandbox import Sandbox, decode_push
from tests.integration.faultkit import T0, AlarmWorld, alarm_world, injected

HOLD_S = 300


@pytest.fixture
def world() -> Iterator[AlarmWorld]:
    # the escalation steps of these alarms (test_alarm_life.py) come a day later: summaries only here
    with Sandbox(parameter_overrides={"EscalateAfterS": 86_400}) as sb:
        yield alarm_world(sb)


def schedule_at(ms: int) -> dict[str, Any]:
    return {"version": "0", "id": "8d3c1e0a-1111-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "123456789012",
            "time": datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/boxwatch-AlarmSweep"], "detail": {}}


def sweep(world: AlarmWorld, t_s: float) -> dict[str, Any]:
    world.sb.counter.reset()
    result: dict[str, Any] = world.sb.invoke("AlarmSweep", schedule_at(T0 + round(t_s * 1000)))
    return result


def summaries(world: AlarmWorld) -> list[tuple[str, int]]:
    """(client, how many alarm_summary pushes it got)."""
    by_arn = {arn: cid for cid, arn in world.endpoints.items()}
    counts = Counter(by_arn[arn] for arn, messages in world.sb.pushed_messages().items() for m in messages
                     if decode_push(m)["kind"] == "alarm_summary")
    return sorted(counts.items())


def flood(world: AlarmWorld, n: int, start_s: float = 0.0) -> None:
    for i in range(n):
        [d] = world.alarm(seq=int(start_s) * 100 + i + 1, t_s=start_s + i)
        assert d.error is None


def test_summary_goes_out_once_at_the_first_sweep_after_the_window(world: AlarmWorld) -> None:
    # Given 10 alarms of one cause from BX-1 in 10 s (3 pushed, 7 held)
    flood(world, 10)
    assert world.pushes("alarm") == {(c, s): 1 for c in world.clients for s in (1, 2, 3)}
    # When the sweep runs before the window's end / Then nothing
    assert sweep(world, HOLD_S - 1)["done"] == []
    # When it runs at the window's end / Then each client of BX-1 gets one summary counting 7
    result = sweep(world, HOLD_S)
    assert result["done"] == [f"alarm_summary:BX-1#overtemp#{T0}"]
    assert summaries(world) == [(c, 1) for c in world.clients]
    note = next(iter(m for m in world.sb.pushed_messages()[world.endpoints["c0"]] if "alarm_summary" in m))
    assert '\\"count\\": 7' in note and "7 more cable overtemperature alarms" in note
    # and a second delivery of the same schedule, or a later sweep, sends nothing more
    sweep(world, HOLD_S)
    sweep(world, HOLD_S + 60)
    assert summaries(world) == [(c, 1) for c in world.clients]


def test_a_window_that_held_nothing_has_no_summary(world: AlarmWorld) -> None:
    flood(world, 3)
    assert sweep(world, HOLD_S + 60)["done"] == []
    assert summaries(world) == []


def test_each_window_that_held_gets_its_own_summary(world: AlarmWorld) -> None:
    # Given two floods, one per hold window
    flood(world, 5)
    flood(world, 6, start_s=HOLD_S)  # received at 300 s: opens the next window
    sweep(world, HOLD_S)
    sweep(world, 2 * HOLD_S)
    # Then two summaries per client (2 and 3 held)
    assert summaries(world) == [(c, 2) for c in world.clients]


def test_failed_summary_push_is_retried_for_that_client_only(world: AlarmWorld) -> None:
    flood(world, 5)
    with injected(world.sb) as faults:
        faults.client_error("sns", "Publish", "InternalError", status=500,
                            when=lambda p: p.get("TargetArn") == world.endpoints["c1"])
        assert sweep(world, HOLD_S)["failed"] == [f"alarm_summary:BX-1#overtemp#{T0}"]
    assert summaries(world) == [("c0", 1), ("c2", 1)]
    # When the next sweep runs / Then c1 is told, nobody twice
    assert sweep(world, HOLD_S + 60)["done"] == [f"alarm_summary:BX-1#overtemp#{T0}"]
    assert summaries(world) == [(c, 1) for c in world.clients]


def test_sweep_cost_follows_due_items_not_the_fleet(world: AlarmWorld) -> None:
    # Given a fleet of 2,000 more boxes and alarms that held nothing
    boxes = [BoxSpec(id=f"FL-{i:05d}", name=f"box {i}", lat=39.5 + (i // 50) * 0.002, lng=116.0 + (i % 50) * 0.002)
             for i in range(2000)]
    list(import_boxes(boxes, world.sb.settings))
    flood(world, 3)
    # When the sweep runs with nothing due / Then one request: the Query of the sparse due index
    sweep(world, HOLD_S)
    assert dict(world.sb.counter.operations) == {"dynamodb.Query": 1}
    # and with one summary due: that Query, then a lease, the bindings, the finish
    flood(world, 4, start_s=HOLD_S)
    sweep(world, 2 * HOLD_S)
    assert world.sb.counter.calls["dynamodb"] == 4
    assert summaries(world) == [(c, 1) for c in world.clients]


def test_bad_schedule_is_refused(world: AlarmWorld) -> None:
    result = world.sb.invoke("AlarmSweep", {"detail-type": "Scheduled Event", "time": "soon"})
    assert result["status"] == "rejected" and result["error"] == "invalid_input"
