"""The benchmark's per-request accounting against moto (issue 7)."""

from __future__ import annotations

from boxwatch.models import BoxItem
from boxwatch.registry import BoxSpec, box_item
from boxwatch_infra.bench.capacity import item_size
from boxwatch_infra.bench.recorder import Recorder
from boxwatch_infra.sandbox import Sandbox


def test_recorder_counts_capacity_from_item_sizes_including_the_index() -> None:
    with Sandbox() as sb:
        recorder = Recorder(sb)
        spec = BoxSpec(id="BX-1", name="No.3 building", address="", lat=39.98, lng=116.31)
        with recorder.recording() as totals, sb.counter.counting():
            box_item(spec, sb.settings).save()  # new item: table + its by_area_cell and by_org_cell entries
            BoxItem.get("BX-1")  # eventually consistent, < 4 KB
            BoxItem.get("BX-1", consistent_read=True)
            BoxItem("BX-1").update(actions=[BoxItem.online.set(False)])  # same index key: 1 index write
            found = list(BoxItem.by_area_cell.query(box_item(spec, sb.settings).area_cell))
        assert [b.box_id for b in found] == ["BX-1"]
        assert totals.requests["dynamodb.PutItem"] == 1 and totals.count("dynamodb") == 5
        assert totals.wcu == 6.0  # (1 table + 2 indexes) x 2 writes, each item < 1 KB
        assert totals.rcu == 0.5 + 1.0 + 0.5  # the GSI query is eventually consistent
        assert totals.items_read == 3
        writes = sorted(w.key for w in totals.writes)
        assert writes[0].startswith("boxwatch-BoxesTable/by_area_cell:") and writes[-1] == "boxwatch-BoxesTable:BX-1"
        stored = recorder._stored("boxwatch-BoxesTable", {"box_id": {"S": "BX-1"}})
        assert stored is not None and 100 < item_size(stored) < 1024
