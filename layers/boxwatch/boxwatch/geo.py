"""H3 geometry: which cells to query so that a radius around a point is covered completely.

A point's neighbours within `radius_m` may sit in cells other than its own. Boxes and alarms are
indexed at one fixed resolution (`INDEX_RES`); a lookup takes the cells of its k-ring whose boundary
actually comes within the radius: 1-4 cells at the default radii, never a missed one
(tests/unit/test_geo.py checks this against brute force).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import lru_cache

import h3

EARTH_RADIUS_M = 6371007.180918475  # the sphere h3 uses, so our distances agree with its own

# The resolution boxes (area cell) and alarms (alarm cell) are indexed at. Fixed, never derived from
# a deploy parameter: a lookup with any radius queries the cells covering it at this resolution, so
# a redeploy with another OutageRadiusM / NeighbourRadiusM still finds what was indexed before.
# Res 7 (hexagon edge ~1.4 km) is what the defaults (500 m / 1000 m) derived before: 1-4 Queries per
# lookup up to ~1 km, ~30 at 5 km; a radius of tens of km needs hundreds (docs/network-status.md).
INDEX_RES = 7

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


def within(origin: LatLng, points: Iterable[tuple[str, LatLng]], radius_m: float) -> list[tuple[str, float]]:
    """(id, distance) of the points within radius, nearest first."""
    out = [(pid, distance_m(origin, p)) for pid, p in points]
    return sorted(((pid, d) for pid, d in out if d <= radius_m), key=lambda x: x[1])
