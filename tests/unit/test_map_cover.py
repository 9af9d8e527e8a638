"""The operator map's cover (geo.map_cover): every box inside a viewport is in one of its Queries'
sort-key ranges, and a city viewport needs a few Queries, not one per box."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from boxwatch import geo
from boxwatch_infra.localcloud.httpapi import _claims


def covered(org: str, lat: float, lng: float, cover: list[geo.MapQuery]) -> bool:
    part, cell = geo.map_keys(org, lat, lng, "BX-1")
    return any(part == f"{org}#{q.part_cell}" and q.lo <= cell <= q.hi for q in cover)


@settings(max_examples=60, deadline=None)
@given(south=st.floats(-60, 60), west=st.floats(-170, 170), height=st.floats(0.001, 2.0), width=st.floats(0.001, 2.0),
       fx=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=20))
def test_every_point_in_the_viewport_is_covered(south: float, west: float, height: float, width: float,
                                                fx: list[tuple[float, float]]) -> None:
    # Given a viewport and points inside it
    north, east = south + height, west + width
    cover = geo.map_cover(south, west, north, east)
    # Then each point's index keys fall in one of the cover's ranges, and the cover stays small
    for a, b in fx:
        lat, lng = south + a * height, west + b * width
        assert covered("acme", lat, lng, cover), (lat, lng)
    assert len(cover) <= geo.MAP_MAX_QUERIES or height > 0.5 or width > 0.5


def test_a_point_outside_its_cells_range_is_not_read() -> None:
    # Given a 1 km viewport in Beijing; a box 50 km away is in none of its ranges (the test can fail)
    cover = geo.map_cover(39.97, 116.30, 39.98, 116.31)
    assert covered("acme", 39.975, 116.305, cover)
    assert not covered("acme", 40.40, 116.30, cover)
    assert len(cover) <= geo.MAP_MAX_QUERIES


def test_local_operator_tokens_carry_the_org_and_groups_as_api_gateway_renders_them() -> None:
    assert _claims("local:ann@acme+operators") == {"sub": "ann", "custom:org": "acme", "cognito:groups": "[operators]"}
    assert _claims("local:alice") == {"sub": "alice"}
    assert _claims("local:@acme+operators") is None
