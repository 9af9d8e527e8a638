"""The alarm log contract: what we accept from a box and what we refuse, and why."""

from __future__ import annotations

from typing import Any

import pytest

from boxwatch.contract import Cause
from boxwatch.errors import InvalidInput, Spoofed
from boxwatch.events import AlarmEvent

T0 = 1_767_225_600_000


def event(**overrides: Any) -> dict[str, Any]:
    base = {"v": 1, "seq": 3, "cause": "overtemp", "alarm_time": T0, "value": 92.5, "threshold": 80,
            "thing": "BX-1", "client_id": "BX-1", "received_at": T0 + 400}
    base.update(overrides)
    return base


def test_valid_alarm_gets_default_unit() -> None:
    alarm = AlarmEvent.parse(event())
    assert alarm.cause is Cause.OVERTEMP and alarm.unit == "degC" and alarm.seq == 3


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"cause": "smoke"}, "cause"),
        ({"value": "hot"}, "value"),
        ({"value": float("nan")}, "value"),
        ({"seq": 0}, "seq"),
        ({"seq": -4}, "seq"),
        ({"thing": "BX/1"}, "thing"),
        ({"phase": "L9"}, "phase"),
        ({"surprise": 1}, "surprise"),
        ({"v": 2}, "v"),
    ],
)
def test_invalid_fields_are_named_in_the_error(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        AlarmEvent.parse(event(**overrides))
    assert field in {p["field"] for p in err.value.details["problems"]}


def test_missing_fields_are_refused() -> None:
    raw = event()
    del raw["alarm_time"]
    with pytest.raises(InvalidInput):
        AlarmEvent.parse(raw)


def test_a_box_cannot_speak_for_another() -> None:
    # Given a message published by BX-2's connection on BX-1's topic, or naming a box in the payload
    with pytest.raises(Spoofed):
        AlarmEvent.parse(event(client_id="BX-2"))
    with pytest.raises(Spoofed):
        AlarmEvent.parse(event(box_id="BX-2"))


def test_not_an_object() -> None:
    with pytest.raises(InvalidInput):
        AlarmEvent.parse(["not", "an", "object"])


def test_time_window() -> None:
    ok = AlarmEvent.parse(event(alarm_time=T0 - 3 * 86_400_000))  # three days late: an outbox backlog
    ok.check_time(max_age_s=7 * 86_400, max_future_s=300)
    with pytest.raises(InvalidInput, match="future"):
        AlarmEvent.parse(event(alarm_time=T0 + 3_600_000)).check_time(7 * 86_400, 300)
    with pytest.raises(InvalidInput, match="old"):
        AlarmEvent.parse(event(alarm_time=T0 - 8 * 86_400_000)).check_time(7 * 86_400, 300)
