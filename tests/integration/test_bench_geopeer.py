"""The neighbour-lookup bench against dynamodbgeo: faithful to the library, counted, complete."""

from __future__ import annotations

import random
import statistics
import sys
from typing import Any

from boxwatch import geo
from boxwatch_infra.aws.moto_patches import faster_moto
from boxwatch_infra.bench import geopeer
from boxwatch_infra.sandbox import Sandbox

TINY = geopeer.PointSet("tiny", 300, 8.0, seed=4)


def test_dynamodbgeo_is_imported_without_leaking_its_modules() -> None:
    # Given the library, which appends its folders to sys.path and imports `model`, `s2`, `util`
    path = list(sys.path)
    # When the bench imports it
    lib = geopeer.import_dynamodbgeo()
    # Then none of that is left, and the library still works
    assert sys.path == path
    assert not {"model", "s2", "util", "GeoPoint", "Covering"} & set(sys.modules)
    assert lib.S2Manager().generateHashKey(lib.S2Manager().generateGeohash(lib.GeoPoint(39.9, 116.4)), 5) > 0


def test_bulk_loaded_items_are_what_dynamodbgeo_put_point_writes() -> None:
    # Given the peer's table, loaded in bulk by the bench
    points = geopeer.square(TINY)[:5]
    with Sandbox() as sb:
        peer = geopeer.DynamoDBGeo(sb, points)
        client = sb.client("dynamodb")
        bulk = {i["rangeKey"]["S"]: i for i in client.scan(TableName=peer.config.tableName)["Items"]}
        # When the same points go through the library's own put_Point into a second table
        lib = peer.lib
        config = lib.GeoDataManagerConfiguration(client, "put-point")
        config.hashKeyLength = peer.config.hashKeyLength
        util = lib.GeoTableUtil(config)
        util.create_table(util.getCreateTableRequest())
        manager = lib.GeoDataManager(config)
        for pid, lat, lng in points:
            extra = {"Item": geopeer.payload(pid, lat, lng, sb)}
            manager.put_Point(lib.PutPointInput(lib.GeoPoint(lat, lng), pid, extra))
        put = {i["rangeKey"]["S"]: i for i in client.scan(TableName="put-point")["Items"]}
    # Then the items are identical
    assert len(put) == 5 and put == bulk


def _mean(values: list[int]) -> float:
    return statistics.fmean(values)


def test_every_scheme_finds_every_box_and_its_requests_are_counted() -> None:
    # Given a small point set / When every scheme looks up the same centres
    cases = geopeer.run_point_set(TINY, [geopeer.Case(TINY, 1000, 8)])
    (case,) = cases
    schemes: dict[str, Any] = case["schemes"]
    # Then none misses a box within the radius, and each reads at least the true count
    assert set(schemes) == {"dynamodbgeo", "dynamodbgeo_tuned", "h3_cover",
                            *(f"h3_ranges_{b}" for b in geopeer.BUDGETS)}
    for name, s in schemes.items():
        assert s["missed"] == 0, name
        assert s["items_read"] >= case["true_in_radius"] > 1, name
        assert set(s["requests"]) == {"dynamodb.Query"}, name  # no page had to be fetched twice here
    # and the Queries counted are the ones each scheme's cover asks for
    points = geopeer.square(TINY)
    centres = random.Random(TINY.seed + 100).sample(points, 8)
    res = geo.resolution_for_radius(1000)
    assert schemes["h3_cover"]["queries"] == _mean([len(geo.covering_cells(c[1], c[2], 1000, res)) for c in centres])
    for b in geopeer.BUDGETS:
        expected = _mean([len(geo.radius_ranges(c[1], c[2], 1000, res, res + 2, b)) for c in centres])
        assert schemes[f"h3_ranges_{b}"]["queries"] == expected
    with Sandbox() as sb:
        peer = geopeer.DynamoDBGeo(sb, [])
        assert schemes["dynamodbgeo"]["queries"] == _mean([len(peer.ranges(c[1], c[2], 1000)) for c in centres])
        assert schemes["dynamodbgeo_tuned"]["queries"] == _mean([len(peer.ranges(c[1], c[2], 1000, tuned=True))
                                                                for c in centres])
    assert schemes["dynamodbgeo_tuned"]["queries"] < schemes["dynamodbgeo"]["queries"]


def test_faster_moto_between_reads_what_moto_reads() -> None:
    # Given the peer's LSI (number sort key) and the ranges' GSI (string sort key)
    points = geopeer.square(TINY)
    with Sandbox() as sb:
        peer = geopeer.DynamoDBGeo(sb, points)
        ranges = geopeer.H3Ranges(sb, points, 7, 9)
        client = sb.client("dynamodb")
        queries: list[dict[str, Any]] = []
        for _, lat, lng in points[:6]:
            for key, lo, hi in peer.ranges(lat, lng, 800):
                queries.append({"TableName": peer.config.tableName, "IndexName": "geohash-index",
                                "KeyConditionExpression": "hashKey = :h AND geohash BETWEEN :a AND :b",
                                "ExpressionAttributeValues": {":h": {"N": str(key)}, ":a": {"N": str(lo)},
                                                              ":b": {"N": str(hi)}}})
            for r in geo.radius_ranges(lat, lng, 800, 7, 9, 3):
                queries.append({"TableName": ranges.table, "IndexName": "by_cell",
                                "KeyConditionExpression": "range_parent = :p AND range_cell BETWEEN :a AND :b",
                                "ExpressionAttributeValues": {":p": {"S": r.parent}, ":a": {"S": r.first},
                                                              ":b": {"S": r.last}}})
        # When each Query runs on plain moto and with the bench's fast path
        plain = [client.query(**q) for q in queries]
        with faster_moto():
            fast = [client.query(**q) for q in queries]
    # Then the items and the counts are the same (and the ranges did find boxes)
    assert [(p["Items"], p["Count"], p["ScannedCount"]) for p in plain] == \
        [(f["Items"], f["Count"], f["ScannedCount"]) for f in fast]
    assert sum(p["Count"] for p in plain) > 0
