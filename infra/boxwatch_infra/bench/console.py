"""Operator console: what one map request (`GET /ops/boxes?bbox=` of a city viewport) and one poll
of the change feed (`GET /ops/changes?since=`) read as the organisation's fleet grows (1k -> 100k
boxes over the city). Requests and items are counted, not timed, through the real OpsApi handler:
the map must read ~ the boxes in view and the feed ~ the changes, never the fleet.

The fleet is spread uniformly over a 30 x 30 km city, all of one organisation; the viewport is
~1.5 x 1.5 km in its middle (what an operator zoomed to a district sees). Ten alarms of boxes in
view make their changes (a box row and an alarm row each); the poll after them reads those, a
poll with nothing new reads nothing.
"""

from __future__ import annotations

import json
from typing import Any

from boxwatch_infra.aws.events import http_api_event
from boxwatch_infra.aws.moto_patches import faster_moto
from boxwatch_infra.bench.connection import reused_connection
from boxwatch_infra.bench.fleet import CITY, START_MS, Alarm, city_boxes, load_boxes, publish_alarm
from boxwatch_infra.bench.recorder import Recorder
from boxwatch_infra.sandbox import Sandbox

ORG = "acme"
CHANGES = 10
LAT0, LNG0 = (CITY[0] + CITY[1]) / 2, (CITY[2] + CITY[3]) / 2
VIEW = (LAT0, LNG0, LAT0 + 0.0135, LNG0 + 0.0176)  # south, west, north, east: ~1.5 km x 1.5 km


def _get(sb: Sandbox, path: str, route: str, query: dict[str, str], now_ms: int) -> dict[str, Any]:
    event = http_api_event("GET", path, route, "ann", now_ms, None, query=query)
    event["requestContext"]["authorizer"]["jwt"]["claims"].update({"custom:org": ORG,
                                                                   "cognito:groups": "[operators]"})
    response = sb.invoke("OpsApi", event)
    if response.get("statusCode") != 200:
        raise RuntimeError(f"{route}: {response.get('statusCode')} {response.get('body')}")
    return dict(json.loads(response["body"]))


def run_fleet(n_boxes: int) -> dict[str, Any]:
    south, west, north, east = VIEW
    specs = [b.model_copy(update={"org": ORG}) for b in city_boxes(n_boxes)]
    inside = [b for b in specs if south <= b.lat <= north and west <= b.lng <= east]
    with Sandbox() as sb, faster_moto(), reused_connection():
        load_boxes(sb, iter(specs))
        recorder = Recorder(sb)
        out: dict[str, Any] = {"fleet": n_boxes, "in_view": len(inside)}
        now = START_MS
        bbox = f"{south},{west},{north},{east}"
        shown: list[str] = []
        pages = 0
        with recorder.recording() as totals:  # every page of the view (200 boxes a page)
            query = {"bbox": bbox, "limit": "200"}
            while True:
                page = _get(sb, "/ops/boxes", "/ops/boxes", query, now)
                pages += 1
                shown += [b["box_id"] for b in page["boxes"]]
                if not page.get("next_cursor"):
                    break
                query = {**query, "cursor": page["next_cursor"]}
        if sorted(shown) != sorted(b.id for b in inside):
            raise RuntimeError(f"the map showed {len(shown)} boxes, {len(inside)} are in view")
        out["map"] = {**totals.snapshot(), "shown": len(shown), "pages": pages}
        cursor = _get(sb, "/ops/changes", "/ops/changes", {}, now)["cursor"]
        alarming = (inside + [b for b in specs if b not in inside])[:CHANGES]
        for i, b in enumerate(alarming):
            publish_alarm(sb, Alarm(1_000 + i * 100, b.id))
        now = START_MS + 5_000
        with recorder.recording() as totals:
            feed = _get(sb, "/ops/changes", "/ops/changes", {"since": cursor}, now)
        out["changes"] = {**totals.snapshot(), "changes": len(feed["changes"]), "alarms": len(alarming)}
        with recorder.recording() as totals:  # the next poll but one (past the feed's re-read overlap)
            idle = _get(sb, "/ops/changes", "/ops/changes", {"since": str(int(feed["cursor"]) + 6_000)},
                        now + 8_000)
        out["idle"] = {**totals.snapshot(), "changes": len(idle["changes"])}
        return out


def run(fleets: list[int]) -> dict[str, Any]:
    return {"fleets": [run_fleet(n) for n in fleets], "view": VIEW}


if __name__ == "__main__":  # python -m boxwatch_infra.bench.console 1000 10000 100000
    import sys

    print(json.dumps(run([int(a) for a in sys.argv[1:]] or [1_000, 10_000]), indent=1))
