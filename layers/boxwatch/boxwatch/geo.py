"""H3 geometry: which cells to query so that a radius around a point is covered completely.

A point's neighbours within `radius_m` may sit in cells other than its own. Boxes are indexed at one
fixed resolution (`INDEX_RES`), alarms at another (`ALARM_INDEX_RES`); a lookup takes the cells of
its k-ring whose boundary actually comes within the radius: 1-4 cells at the default radii, never a
missed one
(tests/unit/test_geo.py checks this against brute force).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import h3

EARTH_RADIUS_M = 6371007.180918475  # the sphere h3 uses, so our distances agree with its own

# The resolution boxes (area cell) and alarms (alarm cell) are indexed at. Fixed, never derived from
# a deploy parameter: a lookup with any radius queries the cells covering it at this resolution, so
# a redeploy with another OutageRadiusM / NeighbourRadiusM still finds what was indexed before.
# Res 7 (hexagon edge ~1.4 km) is what the defaults (500 m / 1000 m) derived before: 1-4 Queries per
# lookup up to ~1 km, ~30 at 5 km; a radius of tens of km needs hundreds (docs/network-status.md).
INDEX_RES = 7
# Alarm cell entries (the same-cause lookup) one step coarser: their sort key holds cause and time, so
# a Query reads only the few alarms of that cause inside the window whatever the cell's size, and the
# cost is the number of Queries: a 1 km disk touches 1.9 res-6 cells on average against 3.8 at res 7.
ALARM_INDEX_RES = 6

LatLng = tuple[float, float]


def distance_m(a: LatLng, b: LatLng) -> float:
    """Great-circle distance in metres."""
    return float(h3.great_circle_distance(a, b, unit="m"))


@lru_cache(maxsize=64)
def resolution_for_radius(radius_m: float) -> int:
    """Finest resolution whose average hexagon edge is at least 1.25x the radius.

    Edges longer than the radius keep the cover to a handful of cells; a finer resolution would
    need more Queries per lookup, a coarser one reads more unrelated items per Query.
    """
    if radius_m <= 0:
        raise ValueError("radius must be positive")
    for res in range(15, -1, -1):
        if h3.average_hexagon_edge_length(res, unit="m") >= 1.25 * radius_m:
            return res
    return 0


def cell_of(lat: float, lng: float, res: int) -> str:
    return str(h3.latlng_to_cell(lat, lng, res))


def parent_of(cell: str, res: int) -> str:
    return str(h3.cell_to_parent(cell, res))


def _vec(p: LatLng) -> tuple[float, float, float]:
    lat, lng = math.radians(p[0]), math.radians(p[1])
    return (math.cos(lat) * math.cos(lng), math.cos(lat) * math.sin(lng), math.sin(lat))


def _cross(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _angle(a: Sequence[float], b: Sequence[float]) -> float:
    # atan2 form stays accurate for tiny angles, where acos(dot) loses precision
    c = _cross(a, b)
    return math.atan2(math.sqrt(_dot(c, c)), _dot(a, b))


def _distance_to_arc(p: Sequence[float], a: Sequence[float], b: Sequence[float]) -> float:
    """Angular distance from p to the great-circle arc a-b (all unit vectors)."""
    n = _cross(a, b)
    nn = math.sqrt(_dot(n, n))
    if nn < 1e-15:
        return _angle(p, a)
    n = (n[0] / nn, n[1] / nn, n[2] / nn)
    d = _dot(p, n)
    proj = (p[0] - d * n[0], p[1] - d * n[1], p[2] - d * n[2])
    # the projection lies on the arc when it is "between" a and b around n
    if _dot(_cross(a, proj), n) >= 0 and _dot(_cross(proj, b), n) >= 0:
        return abs(math.asin(max(-1.0, min(1.0, d))))
    return min(_angle(p, a), _angle(p, b))


def distance_to_cell_m(point: LatLng, cell: str) -> float:
    """Distance from a point to the nearest point of a cell (0 inside it)."""
    res = h3.get_resolution(cell)
    if h3.latlng_to_cell(point[0], point[1], res) == cell:
        return 0.0
    p = _vec(point)
    ring = [_vec(v) for v in h3.cell_to_boundary(cell)]
    best = min(_distance_to_arc(p, ring[i], ring[(i + 1) % len(ring)]) for i in range(len(ring)))
    return best * EARTH_RADIUS_M


def covering_cells(lat: float, lng: float, radius_m: float, res: int) -> list[str]:
    """Every cell at `res` that has a point within `radius_m` of (lat, lng), origin first."""
    origin = h3.latlng_to_cell(lat, lng, res)
    min_edge = min(h3.edge_length(e, unit="m") for e in h3.origin_to_directed_edges(origin))
    # From any point of the origin cell, leaving its k-ring means crossing at least k more cells,
    # each at least about one edge wide; 0.8 absorbs the neighbours' own distortion.
    k = max(1, math.ceil(radius_m / (0.8 * min_edge)))
    tolerance = radius_m * 1e-6 + 0.5  # err on the side of one cell too many, never one too few
    cells = [origin]
    for cell in h3.grid_disk(origin, k):
        if cell != origin and distance_to_cell_m((lat, lng), cell) <= radius_m + tolerance:
            cells.append(cell)
    return [str(c) for c in cells]


@lru_cache(maxsize=65536)
def reach(cell: str, radius_m: float) -> tuple[tuple[str, ...], ...]:
    """The cells that may hold a point within `radius_m` of some point of `cell`, ring by ring
    (nearest first, `cell` itself excluded): the k-ring `covering_cells` looks in, without the
    cells whose nearest point is farther (centre distance less both circumradii)."""
    min_edge = min(h3.edge_length(e, unit="m") for e in h3.origin_to_directed_edges(cell))
    k = max(1, math.ceil(radius_m / (0.8 * min_edge)))
    centre, own = _disc(cell)
    tolerance = radius_m * 1e-6 + 0.5
    rings = []
    for i in range(1, k + 1):
        ring = []
        for other in h3.grid_ring(cell, i):
            at, r = _disc(str(other))
            if distance_m(centre, at) - own - r <= radius_m + tolerance:
                ring.append(str(other))
        rings.append(tuple(ring))
    return tuple(rings)


@lru_cache(maxsize=65536)
def _disc(cell: str) -> tuple[LatLng, float]:
    """A cell's centre and the distance from it to its farthest vertex."""
    centre = h3.cell_to_latlng(cell)
    return centre, max(distance_m(centre, v) for v in h3.cell_to_boundary(cell))


# -------------------------------------------------------------------- range cover
# A finer index for the same lookup: each point is keyed by its fine cell (sort key) under that
# cell's coarse ancestor (partition key). The descendants of any H3 cell are one contiguous run in
# index order, so the fine cells of the disk inside one coarse cell come out as a few runs, each
# read by one Query (`BETWEEN first AND last`). Gaps between runs may be read too, to save Queries:
# reading a gap of n fine cells costs about n cells' items, one Query less.


@dataclass(frozen=True)
class CellRange:
    """One Query: partition key `parent`, sort key between `first` and `last` (fine cells, inclusive)."""

    parent: str
    first: str
    last: str
    cells: int  # fine cells the range spans, read whether or not they touch the disk


def range_keys(lat: float, lng: float, coarse_res: int, fine_res: int) -> tuple[str, str]:
    """(partition key, sort key) of a point for `radius_ranges`: its fine cell and that cell's ancestor.

    The ancestor, not the coarse cell the point lies in: H3 children overhang their parent, so only
    the ancestor makes every fine cell a descendant of the partition it is stored under.
    """
    if not 0 <= coarse_res <= fine_res <= 15:
        raise ValueError("need 0 <= coarse_res <= fine_res <= 15")
    fine = h3.latlng_to_cell(lat, lng, fine_res)
    return str(h3.cell_to_parent(fine, coarse_res)), str(fine)


def disk_cells(lat: float, lng: float, radius_m: float, res: int) -> list[str]:
    """The cells of `covering_cells` (every cell at `res` with a point within the radius), faster
    when the cells are much smaller than the radius: only cells whose centre is near the circle
    get the exact distance test."""
    origin = h3.latlng_to_cell(lat, lng, res)
    min_edge = min(h3.edge_length(e, unit="m") for e in h3.origin_to_directed_edges(origin))
    k = max(1, math.ceil(radius_m / (0.8 * min_edge)))  # as in covering_cells
    tolerance = radius_m * 1e-6 + 0.5
    centre = h3.cell_to_latlng(origin)
    # every point of a cell is within its circumradius of its centre; neighbouring cells differ in
    # size by a few per cent (pentagons: smaller), so twice the origin's bounds them all
    reach = 2 * max(distance_m(centre, v) for v in h3.cell_to_boundary(origin))
    out = []
    for cell in h3.grid_disk(origin, k):
        d = distance_m((lat, lng), h3.cell_to_latlng(cell))
        if d <= radius_m or (d <= radius_m + reach + tolerance
                             and distance_to_cell_m((lat, lng), cell) <= radius_m + tolerance):
            out.append(str(cell))
    return out


def cell_ranges(cells: Iterable[str], coarse_res: int, max_ranges: int | None = None) -> list[CellRange]:
    """The fewest-cells ranges that contain every one of `cells` (one resolution, finer than or at
    `coarse_res`) in at most `max_ranges` Queries (never fewer than one per coarse ancestor).

    Within a coarse cell, runs of consecutive descendants form ranges; to meet the budget the
    smallest gaps are bridged first. Each bridge adds exactly its gap's cells and bridges do not
    interact, so this reads the fewest fine cells any choice of that many ranges can.
    """
    by_parent: dict[str, list[int]] = {}
    res: int | None = None
    for cell in set(cells):
        r = h3.get_resolution(cell)
        if res is None:
            res = r
        elif r != res:
            raise ValueError("cells of one resolution only")
        if r < coarse_res:
            raise ValueError("cells must not be coarser than coarse_res")
        parent = str(h3.cell_to_parent(cell, coarse_res))
        by_parent.setdefault(parent, []).append(h3.cell_to_child_pos(cell, coarse_res))
    if res is None:
        return []
    runs: list[list[Any]] = []  # [parent, first pos, last pos]
    for parent in sorted(by_parent):
        positions = sorted(by_parent[parent])
        runs.append([parent, positions[0], positions[0]])
        for p in positions[1:]:
            if p == runs[-1][2] + 1:
                runs[-1][2] = p
            else:
                runs.append([parent, p, p])
    gaps = sorted((runs[i + 1][1] - runs[i][2] - 1, i) for i in range(len(runs) - 1)
                  if runs[i][0] == runs[i + 1][0])
    budget = len(runs) if max_ranges is None else max(max_ranges, len(by_parent))
    bridged = {i for _, i in gaps[: max(0, len(runs) - budget)]}
    out: list[CellRange] = []
    start = 0
    for i in range(len(runs)):
        if i in bridged:
            continue  # run i continues into run i + 1
        parent, lo, hi = runs[start][0], runs[start][1], runs[i][2]
        out.append(CellRange(parent, str(h3.child_pos_to_cell(parent, res, lo)),
                             str(h3.child_pos_to_cell(parent, res, hi)), hi - lo + 1))
        start = i + 1
    return out


def radius_ranges(lat: float, lng: float, radius_m: float, coarse_res: int, fine_res: int,
                  max_ranges: int | None = None) -> list[CellRange]:
    """The Queries that find every point within `radius_m` of (lat, lng) keyed by `range_keys`."""
    return cell_ranges(disk_cells(lat, lng, radius_m, fine_res), coarse_res, max_ranges)


# ------------------------------------------------------------------------------ the operator map
# by_org_cell: hash = <org>#<cell at MAP_PART_RES>, range = <cell at MAP_CELL_RES>#<box>. The fine
# cells inside any coarser cell are one contiguous range of H3 ids (its digits below the coarse
# resolution run 0..6), so a viewport's fine cells come out as runs of ids, a few Queries with a
# sort-key range each: items read ~ boxes in (and at the edge of) the view, whatever the fleet.
MAP_PART_RES = 3  # ~12,000 km2: one partition per org and region
MAP_CELL_RES = 9  # ~0.1 km2
MAP_MAX_QUERIES = 24  # a viewport's cover: at most this many sort-key ranges (more only across partitions)
MAP_MAX_CELLS = 4000  # cells listed at one resolution (the cover's CPU); a larger view takes a coarser one
MAP_SPILL = 0.75  # edge lengths: how far a cell's fine descendants may lie outside it (measured <= ~0.52)


def map_keys(org: str, lat: float, lng: float, box_id: str) -> tuple[str, str]:
    fine = h3.latlng_to_cell(lat, lng, MAP_CELL_RES)
    return f"{org}#{h3.cell_to_parent(fine, MAP_PART_RES)}", f"{fine}#{box_id}"


def _fine_range(cell: str) -> tuple[str, str]:
    """The smallest and largest MAP_CELL_RES id inside `cell` (as 15-digit hex: string order is id order)."""
    res = h3.get_resolution(cell)
    h = int(cell, 16)
    h = (h & ~(0xF << 52)) | (MAP_CELL_RES << 52)
    lo = hi = h
    for d in range(res + 1, MAP_CELL_RES + 1):
        shift = (15 - d) * 3
        lo &= ~(0x7 << shift)
        hi |= 0x7 << shift  # above every valid digit (0..6): an upper bound
    return f"{lo:015x}", f"{hi:015x}"


@dataclass(frozen=True)
class MapQuery:
    part_cell: str  # the MAP_PART_RES cell (hash key suffix)
    lo: str  # sort-key range (inclusive)
    hi: str


def map_cover(south: float, west: float, north: float, east: float) -> list[MapQuery]:
    """The Queries that read every box inside the bounding box (and a margin of cells around it).

    The finest resolution whose cells over the view stay within MAP_MAX_CELLS; those cells merged
    into at most MAP_MAX_QUERIES sort-key ranges per partition (`cell_ranges`: runs of consecutive
    ids, the smallest gaps bridged). At MAP_CELL_RES a box's key cell contains it, so the view
    itself is covered; at a coarser resolution the fine cells whose ancestor (by id) is a cell spill
    up to ~0.5 of its edge length outside its outline, so the view is grown by MAP_SPILL edge
    lengths (tests/unit/test_map_cover.py checks it against points)."""
    if east < west:  # crosses the antimeridian: rare for a city operator, covered as two boxes
        return map_cover(south, west, north, 180.0) + map_cover(south, -180.0, north, east)
    mid = math.radians((south + north) / 2)
    ranges: list[CellRange] = []
    for res in range(MAP_CELL_RES, MAP_PART_RES - 1, -1):
        edge = h3.average_hexagon_edge_length(res, unit="m")
        m = MAP_SPILL * edge if res < MAP_CELL_RES else 1.0  # 1 m: float edges of cell outlines
        dlat, dlng = m / 111_320.0, m / (111_320.0 * max(0.05, math.cos(mid)))
        s, w = max(-89.9, south - dlat), max(-180.0, west - dlng)
        n, e = min(89.9, north + dlat), min(180.0, east + dlng)
        cell_km2 = 2.6 * edge * edge / 1e6
        view_km2 = (n - s) * 111.32 * (e - w) * 111.32 * max(0.05, math.cos(mid))
        if res > MAP_PART_RES and view_km2 / cell_km2 > MAP_MAX_CELLS:
            continue  # too many cells to list: a coarser resolution
        poly = h3.LatLngPoly([(s, w), (s, e), (n, e), (n, w)])
        found = set(h3.h3shape_to_cells_experimental(poly, res, contain="overlap"))
        found.update(h3.latlng_to_cell(lat, lng, res) for lat in (s, n) for lng in (w, e))
        ranges = cell_ranges(found, MAP_PART_RES, MAP_MAX_QUERIES)
        if len(ranges) <= MAP_MAX_QUERIES:
            break
    return [MapQuery(r.parent, _fine_range(r.first)[0], _fine_range(r.last)[1] + "#\uffff") for r in ranges]
