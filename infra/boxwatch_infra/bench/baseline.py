"""The naive baseline: AlarmIngest's logic without the H3 cell index.

The real AlarmIngest handler with one function swapped while the baseline runs: neighbours are
found the way one would without a geo index - a Scan of the boxes table filtered to the radius'
bounding box, then, for each box actually within the radius, a Query of that box's alarm records
(pk BOX#<box>) for the same cause inside the window. Everything else (reading the box, storing the
alarm, idempotency, bindings, pushes) is the shipped code, so the two differ only in the lookup.
(The baseline still writes the cell index entry it never reads: the store is shared.)

Benchmark code only: never shipped in the domain layer.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from unittest import mock

from boxwatch import alarms, geo
from boxwatch.alarms import Neighbour
from boxwatch.models import AlarmRecord, BoxItem
from boxwatch.settings import Settings

METRES_PER_DEGREE = math.pi * geo.EARTH_RADIUS_M / 180


def bounding_box(lat: float, lng: float, radius_m: float) -> tuple[float, float, float, float]:
    """(lat_lo, lat_hi, lng_lo, lng_hi) containing every point within radius (away from the poles)."""
    dlat = radius_m / METRES_PER_DEGREE * 1.001
    dlng = dlat / max(math.cos(math.radians(abs(lat) + dlat)), 1e-6)
    return lat - dlat, lat + dlat, lng - dlng, lng + dlng


def naive_neighbours(box: BoxItem, cause: str, alarm_time: int, settings: Settings) -> list[Neighbour]:
    lat_lo, lat_hi, lng_lo, lng_hi = bounding_box(box.lat, box.lng, settings.neighbour_radius_m)
    near = BoxItem.scan(BoxItem.lat.between(lat_lo, lat_hi) & BoxItem.lng.between(lng_lo, lng_hi))
    lo = alarm_time - settings.neighbour_window_s * 1000
    found: list[Neighbour] = []
    for other in near:
        if other.box_id == box.box_id:
            continue
        d = geo.distance_m((box.lat, box.lng), (other.lat, other.lng))
        if d > settings.neighbour_radius_m:
            continue
        latest: AlarmRecord | None = None
        # the box's alarm records (its partition also holds index entries and alarm lives)
        for record in AlarmRecord.query(f"BOX#{other.box_id}", AlarmRecord.sk.startswith("SEQ#"),
                                        consistent_read=True):
            if record.cause == cause and lo <= record.alarm_time <= alarm_time and (
                    latest is None or record.alarm_time > latest.alarm_time):
                latest = record
        if latest is not None:
            found.append(Neighbour(other.box_id, other.name, d, int(latest.alarm_time), int(latest.seq)))
    return sorted(found, key=lambda n: (n.distance_m, n.id))


@contextlib.contextmanager
def naive_lookup() -> Iterator[None]:
    """While active, AlarmIngest (the real handler, unchanged otherwise) finds neighbours naively."""
    with mock.patch.object(alarms, "same_cause_neighbours", naive_neighbours):
        yield
