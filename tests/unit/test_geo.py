"""Coverage of the H3 neighbour lookup, checked against brute force."""

from __future__ import annotations

import math

import h3
from hypothesis import given, settings
from hypothesis import strategies as st

from boxwatch import geo
from boxwatch.geo import EARTH_RADIUS_M, covering_cells, distance_m, resolution_for_radius


def destination(lat: float, lng: float, bearing_deg: float, dist_m: float) -> tuple[float, float]:
    """The point reached from (lat, lng) along a great circle (textbook spherical formula)."""
    d = dist_m / EARTH_RADIUS_M
    b = math.radians(bearing_deg)
    p1, l1 = math.radians(lat), math.radians(lng)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), (math.degrees(l2) + 540) % 360 - 180


def assert_covered(lat: float, lng: float, radius: float) -> None:
    res = resolution_for_radius(radius)
    cover = set(covering_cells(lat, lng, radius, res))
    # brute force: points on rings at the radius and inside it, every 3 degrees of bearing
    for frac in (1.0, 0.999, 0.9, 0.5, 0.1):
        for bearing in range(0, 360, 3):
            q = destination(lat, lng, bearing, radius * frac)
            assert distance_m((lat, lng), q) <= radius * 1.0000001
            assert h3.latlng_to_cell(q[0], q[1], res) in cover, (lat, lng, radius, bearing, frac)


lats = st.floats(min_value=-89.9, max_value=89.9, allow_nan=False)
lngs = st.floats(min_value=-180, max_value=180, allow_nan=False)
radii = st.floats(min_value=50, max_value=5000, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(lat=lats, lng=lngs, radius=radii)
def test_cover_is_complete_for_random_points(lat: float, lng: float, radius: float) -> None:
    # Given any point and radius / When we compute the cover / Then every point in the disk is in it
    assert_covered(lat, lng, radius)


@settings(max_examples=80, deadline=None)
@given(lat=lats, lng=lngs, radius=radii, vertex=st.integers(0, 5), nudge=st.floats(0, 1))
def test_cover_is_complete_near_cell_vertices_and_edges(
    lat: float, lng: float, radius: float, vertex: int, nudge: float
) -> None:
    # Given a point sitting on (or a hair from) a vertex or an edge of its cell, where three or two
    # cells meet
    res = resolution_for_radius(radius)
    boundary = h3.cell_to_boundary(h3.latlng_to_cell(lat, lng, res))
    a, b = boundary[vertex % len(boundary)], boundary[(vertex + 1) % len(boundary)]
    point = (a[0] + (b[0] - a[0]) * nudge, a[1] + (b[1] - a[1]) * nudge)
    # When / Then
    assert_covered(point[0], point[1], radius)


def test_cover_near_the_geographic_poles_and_pentagons() -> None:
    # Given points at the poles, on the antimeridian and at a pentagon's centre
    res = resolution_for_radius(1000)
    pentagon = next(iter(h3.get_pentagons(res)))
    plat, plng = h3.cell_to_latlng(pentagon)
    for lat, lng in [(89.99, 10.0), (-89.99, -170.0), (0.0, 179.9999), (plat, plng)]:
        # When / Then
        assert_covered(lat, lng, 1000)


def test_cover_stays_small() -> None:
    # Given the default radius / When we cover a city point / Then only a handful of cells are queried
    res = resolution_for_radius(1000)
    assert res == 7
    assert 1 <= len(covering_cells(39.98, 116.31, 1000, res)) <= 7


@settings(max_examples=150, deadline=None)
@given(lat=lats, lng=lngs, radius=radii, res=st.integers(5, 11))
def test_a_cells_reach_holds_the_cover_of_every_point_of_it(lat: float, lng: float, radius: float, res: int) -> None:
    # Given a point (clustering buckets episodes by cell and compares a cell with its reach)
    cell = h3.latlng_to_cell(lat, lng, res)
    reach = {c for ring in geo.reach(cell, radius) for c in ring} | {cell}
    # When / Then: every cell within the radius of the point is in its cell's reach
    assert set(covering_cells(lat, lng, radius, res)) <= reach
