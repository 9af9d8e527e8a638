"""The flood hold-down's decision, as docs/claims.md states it: per (box, cause), on received_at,
a window [r0, r0 + hold) opened by the first alarm; the first AlarmBurst alarms pushed."""

from __future__ import annotations

from boxwatch.alarms import decide_hold
from boxwatch.events import AlarmEvent
from boxwatch.models import BoxItem
from boxwatch.settings import Settings

T0 = 1_767_225_600_000
SETTINGS = Settings(alarm_burst=3, alarm_repeat_hold_s=300)


def alarm(received_s: float, cause: str = "overcurrent", seq: int = 1) -> AlarmEvent:
    at = T0 + round(received_s * 1000)
    return AlarmEvent.parse({"thing": "BX-1", "v": 1, "seq": seq, "cause": cause, "alarm_time": at,
                             "received_at": at, "value": 70.0, "threshold": 63.0})


def run(times: list[tuple[float, str]]) -> list[tuple[bool, int]]:
    """(held, window start in s) for each alarm, processed in order."""
    box = BoxItem("BX-1", name="b", lat=39.98, lng=116.31, alarm_cell="x", area_cell="x")
    out = []
    for i, (t, cause) in enumerate(times):
        hold = decide_hold(box, alarm(t, cause, i + 1), SETTINGS)
        box.holds = hold.holds
        out.append((hold.held, (hold.start - T0) // 1000))
    return out


def test_the_burst_is_pushed_the_rest_held() -> None:
    assert run([(t, "overcurrent") for t in (0, 1, 2, 3, 4)]) == [
        (False, 0), (False, 0), (False, 0), (True, 0), (True, 0)]


def test_the_window_end_is_exclusive() -> None:
    # received at 299.999 s: still the first window (held); at 300 s: the next window opens
    got = run([(0, "overcurrent"), (1, "overcurrent"), (2, "overcurrent"), (299.999, "overcurrent"),
               (300, "overcurrent")])
    assert got[3] == (True, 0) and got[4] == (False, 300)


def test_another_cause_is_never_held() -> None:
    got = run([(0, "overcurrent"), (1, "overcurrent"), (2, "overcurrent"), (3, "overtemp"), (4, "overcurrent")])
    assert got[3] == (False, 3) and got[4] == (True, 0)


def test_ended_windows_leave_the_box_item() -> None:
    box = BoxItem("BX-1", name="b", lat=39.98, lng=116.31, alarm_cell="x", area_cell="x",
                  holds={"overtemp": {"r0": T0, "n": 5}})
    hold = decide_hold(box, alarm(400, "overcurrent"), SETTINGS)
    assert hold.holds == {"overcurrent": {"r0": T0 + 400_000, "n": 1}}
