"""The neighbour-lookup rows of the bench table: what they claim follows from the measurements."""

from __future__ import annotations

from typing import Any

from boxwatch_infra.bench.__main__ import geopeer_rows


def scheme(queries: float, items: float, rcu: float, missed: int = 0) -> dict[str, Any]:
    return {"queries": queries, "items_read": items, "rcu": rcu, "missed": missed}


def data(ours: dict[str, Any]) -> dict[str, Any]:
    return {"recommended": "h3_ranges_5", "hash_key_length": 5, "cases": [{
        "points": "5,000 boxes over 40 × 40 km", "radius_m": 1000, "lookups": 100, "true_in_radius": 10.4,
        "schemes": {"dynamodbgeo": scheme(7.96, 24.8, 4.02), "dynamodbgeo_tuned": scheme(4.97, 37.6, 2.5),
                    "h3_cover": scheme(3.78, 41.8, 1.89), "h3_ranges_5": ours}}]}


def test_rows_say_met_only_when_ours_is_below_the_peer() -> None:
    # Given ranges below the peer on every column / When the rows are made / Then all are met
    rows = geopeer_rows(data(scheme(5.03, 20.6, 2.52)))
    assert [r.measurement.rsplit(": ", 1)[1] for r in rows] == ["Queries", "items read", "RCU"]
    assert all(r.met for r in rows)
    assert rows[0].ours == "5.03" and rows[0].baseline == "7.96" and "3.78" in rows[0].note
    assert "floor: 10.4" in rows[1].target and "found by every scheme" in rows[1].note
    # Given more items than the peer, or a missed box / Then the items row is not met
    assert not geopeer_rows(data(scheme(5.03, 30.0, 2.52)))[1].met
    missed = geopeer_rows(data(scheme(5.03, 20.6, 2.52, missed=1)))
    assert not missed[1].met and "missed" in missed[1].note
