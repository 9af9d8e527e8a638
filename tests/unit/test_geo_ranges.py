"""The range cover (coarse-cell partition, fine-cell sort key ranges), checked against brute force."""

from __future__ import annotations

import itertools
import random

import h3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boxwatch.geo import (
    CellRange,
    cell_ranges,
    covering_cells,
    disk_cells,
    distance_m,
    radius_ranges,
    range_keys,
    resolution_for_radius,
)
from tests.unit.test_geo import destination

lats = st.floats(min_value=-89.9, max_value=89.9, allow_nan=False)
lngs = st.floats(min_value=-180, max_value=180, allow_nan=False)
radii = st.floats(min_value=50, max_value=5000, allow_nan=False)
budgets = st.one_of(st.none(), st.integers(1, 8))


def in_some_range(key: tuple[str, str], ranges: list[CellRange]) -> bool:
    """What DynamoDB would do: partition key equal, sort key BETWEEN first AND last (string order)."""
    parent, fine = key
    return any(r.parent == parent and r.first <= fine <= r.last for r in ranges)


def assert_ranges_find_every_point(lat: float, lng: float, radius: float, max_ranges: int | None) -> None:
    coarse = resolution_for_radius(radius)
    fine = min(15, coarse + 2)
    ranges = radius_ranges(lat, lng, radius, coarse, fine, max_ranges)
    for frac in (1.0, 0.999, 0.9, 0.5, 0.1, 0.0):
        for bearing in range(0, 360, 3):
            q = destination(lat, lng, bearing, radius * frac)
            assert distance_m((lat, lng), q) <= radius * 1.0000001
            assert in_some_range(range_keys(q[0], q[1], coarse, fine), ranges), (lat, lng, radius, bearing, frac)


@settings(max_examples=60, deadline=None)
@given(lat=lats, lng=lngs, radius=radii, extra=st.integers(0, 2))
def test_disk_cells_are_the_covering_cells(lat: float, lng: float, radius: float, extra: int) -> None:
    # Given any point, radius and a resolution at or finer than the radius' own
    res = min(15, resolution_for_radius(radius) + extra)
    # When / Then the fast cover is exactly the one tests/unit/test_geo.py proves complete
    assert sorted(disk_cells(lat, lng, radius, res)) == sorted(covering_cells(lat, lng, radius, res))


@settings(max_examples=80, deadline=None)
@given(lat=lats, lng=lngs, radius=radii, max_ranges=budgets)
def test_ranges_find_every_point_in_the_disk(lat: float, lng: float, radius: float, max_ranges: int | None) -> None:
    # Given any point, radius and Query budget / When we compute the ranges / Then every point of
    # the disk, keyed as stored, falls in one of them
    assert_ranges_find_every_point(lat, lng, radius, max_ranges)


def test_ranges_at_the_poles_antimeridian_and_pentagons() -> None:
    # Given points where H3 is least regular (a pentagon's children skip a child position)
    res = resolution_for_radius(1000)
    pentagon = next(iter(h3.get_pentagons(res)))
    plat, plng = h3.cell_to_latlng(pentagon)
    for lat, lng in [(89.99, 10.0), (-89.99, -170.0), (0.0, 179.9999), (plat, plng)]:
        for budget in (1, 4, None):
            # When / Then
            assert_ranges_find_every_point(lat, lng, 1000, budget)


@settings(max_examples=40, deadline=None)
@given(lat=lats, lng=lngs, radius=radii)
def test_budget_is_met_and_more_queries_never_read_more(lat: float, lng: float, radius: float) -> None:
    # Given a disk's fine cells
    coarse = resolution_for_radius(radius)
    cells = disk_cells(lat, lng, radius, coarse + 2)
    parents = {h3.cell_to_parent(c, coarse) for c in cells}
    exact = cell_ranges(cells, coarse)
    # Then without a budget the ranges hold the disk's cells and nothing else
    assert sum(r.cells for r in exact) == len(cells)
    spanned = []
    for budget in range(1, len(exact) + 2):
        # When the budget grows
        ranges = cell_ranges(cells, coarse, budget)
        # Then it is met (never fewer than one Query per partition) and reads no more cells
        assert len(ranges) == min(len(exact), max(budget, len(parents)))
        spanned.append(sum(r.cells for r in ranges))
    assert spanned == sorted(spanned, reverse=True) and spanned[-1] == len(cells)


def test_bridging_the_smallest_gaps_is_optimal() -> None:
    # Given random sets of fine cells under a few coarse cells
    rng = random.Random(5)
    coarse = h3.latlng_to_cell(39.9, 116.4, 6)
    parents = [coarse, *list(h3.grid_ring(coarse, 1))[:2]]
    for _ in range(60):
        cells = [h3.child_pos_to_cell(p, 8, pos) for p in rng.sample(parents, rng.randint(1, 3))
                 for pos in rng.sample(range(49), rng.randint(1, 6))]
        exact = cell_ranges(cells, 6)
        gaps = [(a, b) for a, b in itertools.pairwise(exact) if a.parent == b.parent]
        for budget in range(1, len(exact) + 1):
            # When / Then no choice of gaps to bridge reads fewer cells than ours for that many ranges
            ours = sum(r.cells for r in cell_ranges(cells, 6, budget))
            must = max(0, len(exact) - max(budget, len({r.parent for r in exact})))
            best = min(sum(r.cells for r in exact) + sum(h3.cell_to_child_pos(b.first, 6) -
                                                          h3.cell_to_child_pos(a.last, 6) - 1 for a, b in pick)
                       for pick in itertools.combinations(gaps, must))
            assert ours == best


def test_sort_key_order_is_child_order() -> None:
    # Given a coarse cell's fine descendants
    parent = h3.latlng_to_cell(39.9, 116.4, 7)
    children = [h3.child_pos_to_cell(parent, 9, i) for i in range(49)]
    # Then their strings sort as their positions, so BETWEEN first AND last is one run of children
    assert sorted(children) == children
    r = cell_ranges(children[10:20], 7)
    assert r == [CellRange(parent, children[10], children[19], 10)]
    assert [c for c in children if r[0].first <= c <= r[0].last] == children[10:20]


def test_range_keys_store_each_point_under_its_fine_cells_ancestor() -> None:
    # Given points near the edges of a coarse cell, where children overhang their parent
    rng = random.Random(3)
    for _ in range(500):
        lat, lng = 39.9 + rng.uniform(-0.05, 0.05), 116.4 + rng.uniform(-0.05, 0.05)
        # When / Then the fine cell is the point's own and the partition is its ancestor
        parent, fine = range_keys(lat, lng, 7, 9)
        assert fine == h3.latlng_to_cell(lat, lng, 9) and h3.cell_to_parent(fine, 7) == parent
    with pytest.raises(ValueError):
        range_keys(39.9, 116.4, 9, 7)
    with pytest.raises(ValueError):
        cell_ranges([h3.latlng_to_cell(39.9, 116.4, 9), h3.latlng_to_cell(39.9, 116.4, 8)], 7)
    assert cell_ranges([], 7) == []
