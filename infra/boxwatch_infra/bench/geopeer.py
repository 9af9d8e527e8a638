"""The neighbour lookup against a real peer: dynamodbgeo, the Python port of awslabs/dynamodb-geo.

Same points, same centres, same radius for every scheme, each in its own table of in-process moto
with the same box payload (the attributes of a BoxItem without its cell keys) plus its own keys;
every request is counted by the bench recorder (Queries, items evaluated, RCU from item sizes).

- `dynamodbgeo`: the library as a user would run it (`GeoDataManager.queryRadius`, its table from
  `GeoTableUtil`, RegionCoverer defaults, hash key length 5): S2 cells cover the radius' bounding
  rectangle, one Query of its `geohash-index` LSI per cell range and hash key.
  `dynamodbgeo_tuned`: the same table with at most 5 S2 cells per covering (about our Queries).
- `h3_cover`: the lookup as shipped (`geo.covering_cells` at `resolution_for_radius`): one Query
  per H3 cell of an index whose partition key is the cell (as `by_area_cell`).
- `h3_ranges_<n>`: `geo.radius_ranges`: partition key the coarse cell (the same resolution),
  sort key the fine cell two resolutions down; at most n Queries, each a `BETWEEN` over fine cells.

The floor is the true count within the radius (brute force; the centre box included, as every
scheme returns it). Each scheme's results are checked against it: a missed box is reported.

Run alone: `python -m boxwatch_infra.bench.geopeer [--quick] OUT.json`; the suite runs it in a
child process. dynamodbgeo is a bench dependency only (the `bench` extra), never in the layer: on
import it appends its folders to sys.path and leaves top-level modules `model`, `s2`, `util`...
(`import_dynamodbgeo` undoes both).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boxwatch import geo
from boxwatch.registry import BoxSpec, box_item
from boxwatch_infra.aws.moto_patches import faster_moto
from boxwatch_infra.bench.recorder import Recorder
from boxwatch_infra.sandbox import Sandbox

CENTRE = (39.9, 116.4)  # Beijing
HASH_KEY_LENGTH = 5  # the quick figures used 5; the Java library's default is 6
FINE_STEPS = 2  # fine cells two resolutions below the coarse: ~1/49 of its area
BUDGETS = (4, 5, 6)
TUNED_MAX_CELLS = 5  # the peer tuned to about as many Queries as the recommended budget
RECOMMENDED = "h3_ranges_5"

Point = tuple[str, float, float]  # id, lat, lng
Wire = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class PointSet:
    label: str
    boxes: int
    side_km: float
    seed: int


@dataclass(frozen=True)
class Case:
    points: PointSet
    radius_m: float
    lookups: int


SPARSE = PointSet("5,000 boxes over 40 × 40 km", 5_000, 40.0, seed=1)
CITY = PointSet("dense city: 10,000 boxes over 10 × 10 km", 10_000, 10.0, seed=2)
SMALL = PointSet("1,000 boxes over 20 × 20 km", 1_000, 20.0, seed=1)
# the figure (1 km, the neighbour radius), its half and double; the city at the outage
# radius, where the boxes index is read (items per lookup, hence run time, grow with density)
FULL = [Case(SPARSE, 1000, 100), Case(SPARSE, 500, 60), Case(SPARSE, 2000, 40), Case(CITY, 500, 30)]
QUICK = [Case(SMALL, 1000, 30)]


def square(ps: PointSet, centre: tuple[float, float] = CENTRE) -> list[Point]:
    """`ps.boxes` points uniform over a side_km x side_km square around the centre (same seed, same points)."""
    rng = random.Random(ps.seed)
    dlat = ps.side_km / 2 / (math.pi * geo.EARTH_RADIUS_M / 180 / 1000)
    dlng = dlat / math.cos(math.radians(centre[0]))
    return [(f"GP-{i:06d}", rng.uniform(centre[0] - dlat, centre[0] + dlat),
             rng.uniform(centre[1] - dlng, centre[1] + dlng)) for i in range(ps.boxes)]


def within(points: Sequence[Point], centres: Sequence[Point], radius_m: float) -> list[set[str]]:
    """Brute force: for each centre, the ids of every point within the radius (itself included)."""
    step = radius_m / 111_000 * 1.01  # buckets at least a radius wide in latitude
    buckets: dict[tuple[int, int], list[Point]] = defaultdict(list)
    for p in points:
        buckets[(math.floor(p[1] / step), math.floor(p[2] / step))].append(p)
    lng_reach = math.ceil(1 / math.cos(math.radians(abs(CENTRE[0]) + 1))) + 1
    out = []
    for _, lat, lng in centres:
        bi, bj = math.floor(lat / step), math.floor(lng / step)
        found = set()
        for di in (-1, 0, 1):
            for dj in range(-lng_reach, lng_reach + 1):
                for pid, plat, plng in buckets.get((bi + di, bj + dj), ()):
                    if geo.distance_m((lat, lng), (plat, plng)) <= radius_m:
                        found.add(pid)
        out.append(found)
    return out


# -------------------------------------------------------------------- tables
def payload(pid: str, lat: float, lng: float, sb: Sandbox) -> Wire:
    """What a box stores besides its cell keys (the same for every scheme)."""
    item = box_item(BoxSpec(id=pid, name=f"box {pid[3:]}", address=f"{int(pid[3:])} Example Rd", lat=lat, lng=lng),
                    sb.settings)
    wire: Wire = item.serialize()
    for key in ("alarm_cell", "area_cell"):
        wire.pop(key, None)
    return wire


def bulk_put(sb: Sandbox, table: str, items: Iterator[Wire]) -> None:
    """Straight into moto's table, as its BatchWriteItem would put them: loading is not measured,
    and through the API it took most of the run."""
    from moto.dynamodb.models import dynamodb_backends

    backend = dynamodb_backends[sb.template.account_id][sb.template.region]
    for item in items:
        backend.put_item(table, item)


def _h3_table(client: Any, name: str, hash_attr: str, range_attr: str) -> None:
    attrs = {"box_id", hash_attr, range_attr}
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "box_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in sorted(attrs)],
        GlobalSecondaryIndexes=[{"IndexName": "by_cell", "Projection": {"ProjectionType": "ALL"},
                                 "KeySchema": [{"AttributeName": hash_attr, "KeyType": "HASH"},
                                               {"AttributeName": range_attr, "KeyType": "RANGE"}]}])


def _query_all(client: Any, **params: Any) -> list[Wire]:
    items: list[Wire] = []
    while True:
        page = client.query(**params)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _ids_within(items: list[Wire], lat: float, lng: float, radius_m: float) -> set[str]:
    return {i["box_id"]["S"] for i in items
            if geo.distance_m((lat, lng), (float(i["lat"]["N"]), float(i["lng"]["N"]))) <= radius_m}


Lookup = Callable[[float, float, float], set[str]]


class H3Cover:
    """As shipped: partition key the point's cell at `res`, sort key the box id (as `by_area_cell`)."""

    def __init__(self, sb: Sandbox, points: Sequence[Point], res: int):
        self.client, self.res, self.table = sb.client("dynamodb"), res, f"bench-h3-cover-{res}"
        _h3_table(self.client, self.table, "cell", "box_id")
        bulk_put(sb, self.table, ({**payload(pid, lat, lng, sb), "cell": {"S": geo.cell_of(lat, lng, res)}}
                                            for pid, lat, lng in points))

    def lookup(self, lat: float, lng: float, radius_m: float) -> set[str]:
        items: list[Wire] = []
        for cell in geo.covering_cells(lat, lng, radius_m, self.res):
            items += _query_all(self.client, TableName=self.table, IndexName="by_cell",
                                KeyConditionExpression="cell = :c", ExpressionAttributeValues={":c": {"S": cell}})
        return _ids_within(items, lat, lng, radius_m)


class H3Ranges:
    """Partition key the fine cell's ancestor at `coarse`, sort key the fine cell (`geo.range_keys`)."""

    def __init__(self, sb: Sandbox, points: Sequence[Point], coarse: int, fine: int):
        self.client, self.coarse, self.fine = sb.client("dynamodb"), coarse, fine
        self.table = f"bench-h3-ranges-{coarse}-{fine}"
        _h3_table(self.client, self.table, "range_parent", "range_cell")

        def item(pid: str, lat: float, lng: float) -> Wire:
            parent, cell = geo.range_keys(lat, lng, coarse, fine)
            return {**payload(pid, lat, lng, sb), "range_parent": {"S": parent}, "range_cell": {"S": cell}}

        bulk_put(sb, self.table, (item(*p) for p in points))

    def lookup(self, lat: float, lng: float, radius_m: float, max_ranges: int | None) -> set[str]:
        items: list[Wire] = []
        for r in geo.radius_ranges(lat, lng, radius_m, self.coarse, self.fine, max_ranges):
            items += _query_all(self.client, TableName=self.table, IndexName="by_cell",
                                KeyConditionExpression="range_parent = :p AND range_cell BETWEEN :a AND :b",
                                ExpressionAttributeValues={":p": {"S": r.parent}, ":a": {"S": r.first},
                                                           ":b": {"S": r.last}})
        return _ids_within(items, lat, lng, radius_m)


def import_dynamodbgeo() -> Any:
    """`import dynamodbgeo` without what it leaves behind: it appends its folders to sys.path and
    its modules import each other as top-level `model`, `s2`, `util`, `GeoPoint`..., names that
    would shadow any later import of the same name. Both are undone; its objects keep working
    (nothing in it imports at call time)."""
    saved = list(sys.path)
    before = set(sys.modules)
    try:
        import dynamodbgeo
    finally:
        sys.path[:] = saved
    folder = Path(dynamodbgeo.__file__).resolve().parent
    for name in set(sys.modules) - before:
        file = getattr(sys.modules[name], "__file__", None)
        if "." not in name and name != "dynamodbgeo" and file and folder in Path(file).resolve().parents:
            del sys.modules[name]
    return dynamodbgeo


class DynamoDBGeo:
    """dynamodbgeo as its README sets it up; items written with its own hash functions."""

    def __init__(self, sb: Sandbox, points: Sequence[Point], hash_key_length: int = HASH_KEY_LENGTH):
        self.lib = dynamodbgeo = import_dynamodbgeo()
        client = sb.client("dynamodb")
        self.config = dynamodbgeo.GeoDataManagerConfiguration(client, f"bench-dynamodbgeo-{hash_key_length}")
        self.config.hashKeyLength = hash_key_length
        util = dynamodbgeo.GeoTableUtil(self.config)
        util.create_table(util.getCreateTableRequest())
        self.manager = dynamodbgeo.GeoDataManager(self.config)
        # the same table read with fewer S2 cells per covering (RegionCoverer's max_cells, default 8)
        coverer = self.config.S2RegionCoverer

        def fewer_cells() -> Any:
            c = coverer()
            c.max_cells = TUNED_MAX_CELLS
            return c

        tuned = dynamodbgeo.GeoDataManagerConfiguration(client, self.config.tableName)
        tuned.hashKeyLength, tuned.S2RegionCoverer = hash_key_length, fewer_cells
        self.tuned = dynamodbgeo.GeoDataManager(tuned)
        # the very items put_Point writes (`geo_item`; tests compare the two), in bulk
        bulk_put(sb, self.config.tableName, (self.geo_item(sb, *p) for p in points))

    def geo_item(self, sb: Sandbox, pid: str, lat: float, lng: float) -> Wire:
        s2 = self.lib.S2Manager()
        geohash = s2.generateGeohash(self.lib.GeoPoint(lat, lng))
        return {**payload(pid, lat, lng, sb),
                self.config.hashKeyAttributeName: {"N": str(s2.generateHashKey(geohash, self.config.hashKeyLength))},
                self.config.rangeKeyAttributeName: {"S": pid},
                self.config.geohashAttributeName: {"N": str(geohash)},
                self.config.geoJsonAttributeName: {"S": f"{lat},{lng}"}}

    def ranges(self, lat: float, lng: float, radius_m: float, tuned: bool = False) -> list[tuple[int, int, int]]:
        """(hash key, geohash min, geohash max) of each Query queryRadius makes, as it computes them."""
        config = (self.tuned if tuned else self.manager).config
        request = self.lib.QueryRadiusRequest(self.lib.GeoPoint(lat, lng), radius_m, {}, sort=False)
        rect = self.lib.S2Util().getBoundingLatLngRectFromQueryRadiusInput(request)
        covering = self.lib.Covering(config.S2RegionCoverer().get_covering(rect))
        s2 = self.lib.S2Manager()
        return [(s2.generateHashKey(r.rangeMin, config.hashKeyLength), r.rangeMin, r.rangeMax)
                for r in covering.getGeoHashRanges(config.hashKeyLength)]

    def lookup(self, lat: float, lng: float, radius_m: float, tuned: bool = False) -> set[str]:
        # a fresh query dict each time: the library keeps (and mutates) the one it is given
        request = self.lib.QueryRadiusRequest(self.lib.GeoPoint(lat, lng), radius_m, {}, sort=False)
        return {i["box_id"]["S"] for i in (self.tuned if tuned else self.manager).queryRadius(request)}


# -------------------------------------------------------------------- measuring
def measure(sb: Sandbox, recorder: Recorder, lookup: Lookup, centres: Sequence[Point], radius_m: float,
            truth: list[set[str]]) -> dict[str, Any]:
    missed = 0
    with recorder.recording() as totals, sb.counter.counting():
        for (_, lat, lng), true in zip(centres, truth, strict=True):
            missed += len(true - lookup(lat, lng, radius_m))
    n = len(centres)
    return {"queries": totals.requests["dynamodb.Query"] / n, "items_read": totals.items_read / n,
            "rcu": totals.rcu / n, "missed": missed, "requests": dict(totals.requests)}


def run_point_set(ps: PointSet, cases: list[Case]) -> list[dict[str, Any]]:
    points = square(ps)
    out = []
    with Sandbox() as sb, faster_moto():
        t = time.perf_counter()
        recorder = Recorder(sb)
        peer = DynamoDBGeo(sb, points)
        covers: dict[int, H3Cover] = {}
        ranges: dict[int, H3Ranges] = {}
        for case in cases:
            res = geo.resolution_for_radius(case.radius_m)
            if res not in covers:
                covers[res] = H3Cover(sb, points, res)
                ranges[res] = H3Ranges(sb, points, res, min(15, res + FINE_STEPS))
        load_s = time.perf_counter() - t
        for case in cases:
            t = time.perf_counter()
            res = geo.resolution_for_radius(case.radius_m)
            centres = random.Random(ps.seed + 100).sample(points, case.lookups)
            truth = within(points, centres, case.radius_m)
            r = case.radius_m
            schemes: dict[str, dict[str, Any]] = {
                "dynamodbgeo": {**measure(sb, recorder, peer.lookup, centres, r, truth),
                                "config": f"hash key length {HASH_KEY_LENGTH}, RegionCoverer defaults (max 8 cells)"},
                "dynamodbgeo_tuned": {**measure(sb, recorder, functools.partial(peer.lookup, tuned=True), centres, r,
                                                truth),
                                      "config": f"hash key length {HASH_KEY_LENGTH}, RegionCoverer max "
                                                f"{TUNED_MAX_CELLS} cells"},
                "h3_cover": {**measure(sb, recorder, covers[res].lookup, centres, r, truth),
                             "config": f"res {res} cells, partition key per cell"},
            }
            index = ranges[res]
            for budget in BUDGETS:
                schemes[f"h3_ranges_{budget}"] = {
                    **measure(sb, recorder, functools.partial(index.lookup, max_ranges=budget), centres, r, truth),
                    "config": f"partition res {index.coarse}, sort key res {index.fine}, at most {budget} Queries"}
            out.append({"points": ps.label, "boxes": ps.boxes, "side_km": ps.side_km, "radius_m": r,
                        "lookups": case.lookups, "true_in_radius": sum(map(len, truth)) / case.lookups,
                        "schemes": schemes, "wall_s": round(time.perf_counter() - t, 1)})
        out[0]["load_s"] = round(load_s, 1)
    return out


def run(cases: list[Case]) -> dict[str, Any]:
    from moto.dynamodb.responses import DynamoHandler

    from boxwatch_infra.aws.moto_patches import fast_dynamodb_responses

    by_set: dict[PointSet, list[Case]] = defaultdict(list)
    for c in cases:
        by_set[c.points].append(c)
    # moto's responses dumped as JSON, not walked through botocore's shapes: same bodies, 5x faster
    original = fast_dynamodb_responses()
    try:
        results = [r for ps, cs in by_set.items() for r in run_point_set(ps, cs)]
    finally:
        DynamoHandler.serialized = original  # type: ignore[method-assign, assignment]
    return {"cases": results, "recommended": RECOMMENDED, "hash_key_length": HASH_KEY_LENGTH}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m boxwatch_infra.bench.geopeer")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("out", help="where to write the JSON")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    data = run(QUICK if args.quick else FULL)
    Path(args.out).write_text(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
