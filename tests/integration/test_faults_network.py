"""Third alarm under faults (docs/claims.md "Third alarm", "Faults"): a throttle or crash after the
watched alarm was claimed is finished by whoever retries (Lambda's retry of the lifecycle event, or
the sweep), nobody twice; the reverse race (an alarm stored after its box's drop was processed)
is still caught by the sweep."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from boxwatch_infra.aws.events import lifecycle_event
from boxwatch_infra.sandbox import Delivery, Sandbox, decode_push
from tests.integration.faultkit import T0, AlarmWorld, Crash, alarm_world, expire_in_progress, injected


@pytest.fixture
def world() -> Iterator[AlarmWorld]:
    with Sandbox(async_invokes=True) as sb:
        w = alarm_world(sb)
        drop(w, "connected", 1, 0)
        yield w


def drop(world: AlarmWorld, kind: str, version: int, t_s: float, box: str = "BX-1") -> list[Delivery]:
    now = T0 + round(t_s * 1000)
    world.sb.now_ms = now
    doc = lifecycle_event(box, kind, now, version, 1, None if kind == "connected" else "CONNECTION_LOST")
    return world.sb.publish_mqtt(f"$aws/events/presence/{kind}/{box}", doc, "", now)


def sweep(world: AlarmWorld, t_s: float) -> Any:
    now = T0 + round(t_s * 1000)
    world.sb.now_ms = now
    time = datetime.fromtimestamp(now / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return world.sb.invoke("OfflineSweep", {"detail-type": "Scheduled Event", "time": time})


def third_alarms(world: AlarmWorld) -> Counter[tuple[str, int]]:
    by_arn = {arn: cid for cid, arn in world.endpoints.items()}
    out: Counter[tuple[str, int]] = Counter()
    for arn, messages in world.sb.pushed_messages().items():
        for m in messages:
            data = decode_push(m)
            if data["kind"] == "offline_after_alarm":
                out[(by_arn[arn], int(data["alarm_seq"]))] += 1
    return out


def each_once(world: AlarmWorld) -> dict[tuple[str, int], int]:
    return {(c, 1): 1 for c in world.clients}


def bindings_query(world: AlarmWorld) -> Any:
    return lambda p: p["TableName"] == world.sb.tables["BindingsTable"]


def test_throttle_after_the_claim_is_finished_by_the_retry(world: AlarmWorld) -> None:
    # Given BX-1 alarmed, and the bindings Query of the third alarm is throttled once
    world.alarm(t_s=10)
    with injected(world.sb) as faults:
        faults.client_error("dynamodb", "Query", "ProvisionedThroughputExceededException", when=bindings_query(world))
        # When BX-1 drops 60 s later
        [d] = drop(world, "disconnected", 2, 70)
    # Then Lambda's retry of the lifecycle event tells every client, once; later sweeps add nothing
    assert d.error is None, d.error
    assert third_alarms(world) == each_once(world)
    for t in (120, 180, 360, 420):
        sweep(world, t)
    assert third_alarms(world) == each_once(world)
    assert world.queue("AsyncFailureQueue") == []


def test_push_failure_for_one_client_is_retried_for_that_client_only(world: AlarmWorld) -> None:
    # Given SNS fails (500) for c1 on the first attempt of the third alarm
    world.alarm(t_s=10)
    with injected(world.sb) as faults:
        faults.client_error("sns", "Publish", "InternalError", status=500,
                            when=lambda p: p.get("TargetArn") == world.endpoints["c1"] and "offline" in p["Message"])
        drop(world, "disconnected", 2, 70)
    # Then the retry reaches c1 only; the sweep's late check does not tell anyone again
    for t in (120, 180, 360, 420):
        sweep(world, t)
    assert third_alarms(world) == each_once(world)


def test_crash_mid_fan_out_is_resumed_by_the_retry_without_repeats(world: AlarmWorld) -> None:
    # Given the process crashes at c1's push, after c0 was sent; the retry comes after the timeout
    world.alarm(t_s=10)
    world.sb.before_retry.append(lambda fn, ev: expire_in_progress(world.sb))
    with injected(world.sb) as faults:
        faults.crash("sns", "Publish", exc=Crash,
                     when=lambda p: p.get("TargetArn") == world.endpoints["c1"] and "offline" in p["Message"])
        [d] = drop(world, "disconnected", 2, 70)
    assert d.error is None, d.error
    for t in (120, 180, 360):
        sweep(world, t)
    assert third_alarms(world) == each_once(world)


def test_retries_exhausted_the_sweep_finishes_the_claim(world: AlarmWorld) -> None:
    # Given every attempt of the lifecycle event fails after the claim (three throttles)
    world.alarm(t_s=10)
    with injected(world.sb) as faults:
        faults.client_error("dynamodb", "Query", "ProvisionedThroughputExceededException", times=3,
                            when=bindings_query(world))
        [d] = drop(world, "disconnected", 2, 70)
    assert d.error is not None and third_alarms(world) == {}
    # When the next sweeps run / Then the sweep's check tells every client, once
    for t in (120, 180, 360, 420):
        sweep(world, t)
    assert third_alarms(world) == each_once(world)


def test_alarm_stored_after_the_drop_was_processed_is_caught_by_the_sweep(world: AlarmWorld) -> None:
    # Given IoT Core received BX-1's alarm at 60 s, but AlarmIngest failed twice (throttled) and its
    # last retry stored it only after the drop at 70 s was processed (the reverse race)
    with injected(world.sb) as faults:
        faults.client_error("dynamodb", "GetItem", "ProvisionedThroughputExceededException", times=3,
                            when=lambda p: p["TableName"] == world.sb.tables["BoxesTable"])
        [failed] = world.alarm(t_s=60)
    assert failed.error is not None
    drop(world, "disconnected", 2, 70)
    assert third_alarms(world) == {}
    world.sb.now_ms = T0 + 100_000
    world.sb.invoke("AlarmIngest", failed.event)  # Lambda's retry of the same rule event (received_at 60 s)
    # When the sweeps run / Then the third alarm goes out, once
    for t in (120, 180, 360, 420):
        sweep(world, t)
    assert third_alarms(world) == each_once(world)
