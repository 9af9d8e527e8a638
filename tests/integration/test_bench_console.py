"""The console bench row measures what it says: the viewport's boxes, the change feed's changes."""

from __future__ import annotations

from boxwatch_infra.bench import console
from boxwatch_infra.bench.__main__ import console_rows


def test_the_console_bench_reads_about_the_boxes_in_view_and_the_changes() -> None:
    # Given two small fleets of one organisation over the city
    data = console.run([600, 1200])
    # Then the map showed exactly the boxes in view, reading a few items per box shown
    for f in data["fleets"]:
        assert f["map"]["shown"] == f["in_view"] > 0
        assert f["map"]["items_read"] <= 2 * f["map"]["shown"] + 10
        # and the feed read the alarms' changes, then nothing
        assert f["changes"]["changes"] >= console.CHANGES and f["idle"]["changes"] == 0
    assert data["fleets"][0]["changes"]["dynamodb_requests"] == data["fleets"][1]["changes"]["dynamodb_requests"]
    # and every row of the report is met
    assert all(row.met for row in console_rows(data))
