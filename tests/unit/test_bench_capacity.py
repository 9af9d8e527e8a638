"""The benchmark's capacity-unit calculator and partition-rate computation (issue 7)."""

from __future__ import annotations

import math

import pytest

from boxwatch_infra.bench.baseline import bounding_box
from boxwatch_infra.bench.capacity import item_size, number_size, peak_rate, percentile, read_units, write_units


def test_item_size_follows_the_documented_rules() -> None:
    # strings: name + UTF-8 bytes; numbers: name + 1 byte per 2 significant digits + 1;
    # bool/null: name + 1; list/map: name + 3 + 1 per element + elements
    assert item_size({"pk": {"S": "BOX#1"}}) == 2 + 5
    assert item_size({"n": {"S": "报警"}}) == 1 + 6  # two 3-byte characters
    assert item_size({"v": {"N": "12345"}}) == 1 + 3 + 1
    assert item_size({"ok": {"BOOL": True}, "x": {"NULL": True}}) == (2 + 1) + (1 + 1)
    assert item_size({"l": {"L": [{"S": "ab"}, {"N": "1"}]}}) == 1 + 3 + (1 + 2) + (1 + 2)
    assert item_size({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + (1 + 1 + 1)
    assert item_size({"ss": {"SS": ["a", "bc"]}}) == 2 + 3
    assert item_size(None) == 0


@pytest.mark.parametrize(("text", "size"), [("0", 2), ("7", 2), ("12", 2), ("123", 3), ("-1.50", 2),
                                             ("1000000", 2), ("0.000123", 3), ("1.5E+10", 2)])
def test_number_size_trims_zeroes(text: str, size: int) -> None:
    assert number_size(text) == size


def test_read_units_round_up_to_4kb_and_halve_for_eventual_consistency() -> None:
    assert read_units(0) == 0.5  # even nothing costs the minimum
    assert read_units(3500, consistent=True) == 1
    assert read_units(4097, consistent=True) == 2
    assert read_units(10 * 1024) == 1.5
    assert read_units(8 * 1024, transactional=True) == 4


def test_write_units_round_up_to_1kb_and_double_in_transactions() -> None:
    assert write_units(1) == 1
    assert write_units(1024) == 1
    assert write_units(1025) == 2
    assert write_units(500, transactional=True) == 2


def test_peak_rate_finds_the_busiest_key_in_a_sliding_second() -> None:
    events = [(0, "a", 1.0), (500, "a", 1.0), (999, "a", 2.0), (1000, "a", 1.0),  # a: 4 in [0, 999]
              (1500, "b", 3.0), (1600, "b", 3.0)]  # b: 6 within 100 ms
    assert peak_rate(events) == ("b", 6.0)
    # a burst straddling a second boundary is not split
    assert peak_rate([(900, "c", 1.0), (1100, "c", 1.0)]) == ("c", 2.0)
    # nothing happens twice within a second
    assert peak_rate([(0, "d", 1.0), (1000, "d", 1.0), (2000, "d", 1.0)]) == ("d", 1.0)
    assert peak_rate([]) == (None, 0.0)


def test_percentile_nearest_rank() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2
    assert percentile(range(1, 101), 99) == 99
    assert percentile([], 99) == 0.0


def test_baseline_bounding_box_contains_the_radius() -> None:
    from boxwatch import geo

    lat, lng, r = 39.9, 116.4, 1000.0
    lat_lo, lat_hi, lng_lo, lng_hi = bounding_box(lat, lng, r)
    for bearing in range(0, 360, 15):
        # a point exactly r away in each direction (small-distance approximation, then checked)
        dlat = r * math.cos(math.radians(bearing)) / 111_195
        dlng = r * math.sin(math.radians(bearing)) / (111_195 * math.cos(math.radians(lat)))
        p = (lat + dlat * 0.999, lng + dlng * 0.999)
        assert geo.distance_m((lat, lng), p) <= r
        assert lat_lo <= p[0] <= lat_hi and lng_lo <= p[1] <= lng_hi
