"""Fourth alarm under overlapping sweeps (docs/claims.md "Fourth alarm"): a warning claimed by a
sweep that has not confirmed it yet is that sweep's for the claim's lease. A second sweep that runs
meanwhile (a slow sweep on a busy schedule, a schedule delivered twice) leaves it alone, so the
phone is told once; a sweep after the lease sends it (the first sweep died); a failed push is
released at once and sent by the next sweep."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from boxwatch.models import LEASE_MS
from boxwatch.registry import BindingSpec, BoxSpec, bind, import_boxes
from boxwatch_infra.sandbox import Sandbox, decode_push
from tests.integration.faultkit import AlarmWorld, Crash, alarm_world, injected
from tests.integration.test_faults_network import drop, sweep


@pytest.fixture
def world() -> Iterator[AlarmWorld]:
    # BX-1 and BX-2 (300 m apart) drop; BX-3, 200 m from BX-2, stays online with its phone c7
    with Sandbox(parameter_overrides={"StormMinBoxes": 1_000_000}) as sb:
        w = alarm_world(sb, n_clients=1)
        list(import_boxes([BoxSpec(id="BX-3", name="No.3 building", address="3 Main St", lat=39.9845,
                                   lng=116.31)], sb.settings))
        sb.create_things(["BX-3"])
        w.endpoints.update(sb.create_push_endpoints(["c7"]))
        bind(BindingSpec(client_id="c7", box_id="BX-3", target=w.endpoints["c7"], locale="en"))
        for box in ("BX-1", "BX-2", "BX-3"):
            drop(w, "connected", 1, 0, box)
        yield w


def outage_pushes(world: AlarmWorld, client: str) -> list[dict[str, Any]]:
    return [d for m in world.sb.pushed_messages().get(world.endpoints[client], [])
            if (d := decode_push(m))["kind"] == "neighbour_outage"]


def test_a_sweep_overlapping_an_unconfirmed_claim_does_not_send_it_again(world: AlarmWorld) -> None:
    # Given BX-1 and BX-2 drop 15 s apart, and the sweep at 60 s claims c7's warning and dies
    # (or is still running: a crash before the push looks the same to the store)
    drop(world, "disconnected", 2, 5, "BX-1")
    drop(world, "disconnected", 2, 20, "BX-2")
    with injected(world.sb) as faults:
        faults.crash("sns", "Publish", exc=Crash, when=lambda p: p.get("TargetArn") == world.endpoints["c7"])
        with pytest.raises(Crash):
            sweep(world, 60)
    assert outage_pushes(world, "c7") == []
    # When the next sweeps run inside the claim's lease, and that schedule is delivered twice
    sweep(world, 120)
    sweep(world, 120)
    # Then nothing is sent: the claim may still be its sweep's
    assert outage_pushes(world, "c7") == []
    # When a sweep runs once the lease is over
    sweep(world, 60 + LEASE_MS / 1000)
    sweep(world, 60 + LEASE_MS / 1000 + 60)
    # Then the warning is sent, once, naming both boxes
    told = outage_pushes(world, "c7")
    assert [sorted(p["offline_boxes"]) for p in told] == [["BX-1", "BX-2"]]


def test_a_failed_push_is_released_and_sent_by_the_next_sweep(world: AlarmWorld) -> None:
    # Given the sweep at 60 s decides the outage but SNS refuses c7's push
    drop(world, "disconnected", 2, 5, "BX-1")
    drop(world, "disconnected", 2, 20, "BX-2")
    with injected(world.sb) as faults:
        faults.client_error("sns", "Publish", "InternalError", status=500, times=20,
                            when=lambda p: p.get("TargetArn") == world.endpoints["c7"])
        sweep(world, 60)
    assert outage_pushes(world, "c7") == []
    # When the next sweep runs (inside what would be the lease)
    sweep(world, 120)
    sweep(world, 180)
    # Then it sends the warning, once
    assert len(outage_pushes(world, "c7")) == 1
