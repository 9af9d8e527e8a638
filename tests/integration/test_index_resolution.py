"""The H3 cells boxes and alarms are indexed under do not depend on a deploy parameter: after a
redeploy with another OutageRadiusM / NeighbourRadiusM, lookups still find what was indexed before
(the first version derived the resolution from the radius, and a redeploy silently found nothing)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from boxwatch import geo
from boxwatch.models import BoxItem
from boxwatch.registry import BindingSpec, BoxSpec, bind, import_boxes
from boxwatch_infra.aws.events import lifecycle_event
from boxwatch_infra.sandbox import Sandbox, decode_push

T0 = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
R = 6371007.180918475


def east(lat: float, lng: float, metres: float) -> tuple[float, float]:
    return lat, lng + math.degrees(metres / (R * math.cos(math.radians(lat))))


def kinds(sb: Sandbox, endpoints: dict[str, str]) -> dict[str, list[str]]:
    by_arn = {arn: cid for cid, arn in endpoints.items()}
    return {by_arn[arn]: [decode_push(m)["kind"] for m in msgs] for arn, msgs in sb.pushed_messages().items()}


def boxes(specs: list[tuple[str, float]], sb: Sandbox) -> None:
    list(import_boxes([BoxSpec(id=b, name=b, lat=lat, lng=lng) for b, (lat, lng) in
                       ((b, east(39.95, 116.3, m)) for b, m in specs)], sb.settings))


def test_outage_neighbours_are_found_after_the_outage_radius_changes() -> None:
    with Sandbox(parameter_overrides={"OutageRadiusM": 500}) as sb:
        # Given boxes registered while the outage radius was 500 m
        boxes([("O1", 0), ("O2", 300), ("N1", 1200)], sb)
        endpoints = sb.create_push_endpoints(["nina"])
        bind(BindingSpec(client_id="nina", box_id="N1", target=endpoints["nina"], locale="en"))
        # When the stack is redeployed with 2000 m and two boxes drop together
        sb.redeploy(OutageRadiusM=2000)
        for i, box in enumerate(("O1", "O2")):
            for kind, version, at in (("connected", 1, T0), ("disconnected", 2, T0 + 10_000 + i * 1000)):
                sb.now_ms = at
                sb.publish_mqtt(f"$aws/events/presence/{kind}/{box}",
                                lifecycle_event(box, kind, at, version, 1, None if kind == "connected" else
                                                "CONNECTION_LOST"), "", at)
        sb.now_ms = T0 + 60_000
        sb.invoke("OfflineSweep", {"detail-type": "Scheduled Event", "time": "2026-01-01T00:01:00Z"})
        # Then N1 (1.2 km away, within the new radius) is found and its client warned
        assert kinds(sb, endpoints) == {"nina": ["neighbour_outage"]}


def test_same_cause_neighbours_are_found_after_the_neighbour_radius_changes() -> None:
    with Sandbox(parameter_overrides={"NeighbourRadiusM": 1000}) as sb:
        # Given A's alarm stored while the neighbour radius was 1000 m
        boxes([("A", 0), ("B", 2500)], sb)
        endpoints = sb.create_push_endpoints(["bea"])
        bind(BindingSpec(client_id="bea", box_id="B", target=endpoints["bea"], locale="en"))

        def alarm(box: str, seq: int, t_ms: int) -> None:
            sb.now_ms = t_ms
            payload = {"v": 1, "seq": seq, "cause": "overtemp", "alarm_time": t_ms, "value": 92.5, "threshold": 85}
            sb.publish_mqtt(f"boxwatch/boxes/{box}/alarms", payload, box, t_ms)

        alarm("A", 1, T0)
        # When the stack is redeployed with 3000 m and B (2.5 km away) raises the same cause
        sb.redeploy(NeighbourRadiusM=3000)
        alarm("B", 1, T0 + 30_000)
        # Then B's client hears of A
        assert kinds(sb, endpoints) == {"bea": ["alarm", "same_cause_nearby"]}


def test_reindex_moves_boxes_indexed_by_an_older_version_to_the_fixed_cells() -> None:
    with Sandbox() as sb:
        # Given boxes whose cells were written at a radius-derived resolution (older versions)
        boxes([("O1", 0), ("O2", 300)], sb)
        for b in BoxItem.scan():
            b.update(actions=[BoxItem.area_cell.set("8631aa827ffffff"), BoxItem.alarm_cell.set("8631aa827ffffff")])
        # When the operator runs the migration (twice: it is idempotent)
        from boxwatch.registry import reindex_boxes

        first = reindex_boxes(sb.settings)
        second = reindex_boxes(sb.settings)
        # Then every box is found under the cells the lookups query
        assert (first, second) == (2, 0)
        for b in BoxItem.scan():
            assert b.area_cell == geo.cell_of(float(b.lat), float(b.lng), sb.settings.area_res)
            assert b.alarm_cell == geo.cell_of(float(b.lat), float(b.lng), sb.settings.alarm_res)
