"""Replay's `faults:` (boxwatch_infra/replay/faults.py): injected throttles, 5xx and crashes on
chosen calls of chosen functions, cleared by Lambda's asynchronous retries."""

from __future__ import annotations

from typing import Any

import pytest

from boxwatch_infra.replay import Replay, Scenario, ScenarioError

BOXES = [{"id": "BX-1", "name": "No.1", "lat": 39.98, "lng": 116.31},
         {"id": "BX-2", "name": "No.2", "lat": 39.9815, "lng": 116.31}]  # 167 m apart
CLIENTS = [{"id": "alice", "boxes": ["BX-1"]}, {"id": "bob", "boxes": ["BX-2"]}]


def alarm(t: int, box: str, seq: int) -> dict[str, Any]:
    return {"t": t, "box": box, "type": "alarm", "cause": "overtemp", "value": 95, "threshold": 85, "seq": seq}


def replay(events: list[dict[str, Any]], faults: list[dict[str, Any]], **settings: Any) -> dict[str, Any]:
    return Replay(Scenario.model_validate({"settings": settings, "boxes": BOXES, "clients": CLIENTS,
                                           "events": events, "faults": faults})).run()


def kinds(report: dict[str, Any]) -> list[tuple[str, str, Any]]:
    return sorted((n["client"], n["kind"], n.get("seq")) for n in report["notifications"])


def test_a_throttle_is_cleared_by_the_retry_and_reported() -> None:
    # Given the alarm's store transaction throttled once
    report = replay([alarm(0, "BX-1", 1)], [{"function": "AlarmIngest", "service": "dynamodb",
                                             "operation": "TransactWriteItems", "error": "throttle"}])
    # Then the retry stores and pushes it once (and, unacknowledged for 300 s, one reminder), nothing
    # is rejected, and the fault fired once
    assert kinds(report) == [("alice", "alarm", 1), ("alice", "reminder", None)]
    assert report["rejected"] == []
    assert report["faults"] == [{"function": "AlarmIngestFunction", "service": "dynamodb",
                                 "operation": "TransactWriteItems", "error": "throttle", "after": 0, "times": 1,
                                 "fired": 1}]


def test_a_fault_never_fires_on_the_last_attempt() -> None:
    # Given every SNS publish of AlarmIngest failing with a 5xx, up to 20 times
    report = replay([alarm(0, "BX-1", 1), alarm(5, "BX-2", 1)],
                    [{"function": "AlarmIngestFunction", "service": "sns", "error": "5xx", "times": 20}])
    # Then each invocation fails twice (1 + 2 retries) and its third attempt goes through: a failing
    # attempt tries each push twice (the fan-out's own resend), alice's alarm is one push, BX-2's
    # three (bob's alarm, his second alarm naming BX-1, alice's nearby_update naming BX-2)
    assert report["faults"][0]["fired"] == 2 * 2 * 1 + 2 * 2 * 3
    assert [k for k in kinds(report) if k[1] == "alarm"] == [("alice", "alarm", 1), ("bob", "alarm", 1)]
    assert report["rejected"] == []


def test_a_crash_after_the_call_leaves_its_effect_and_the_retry_finishes() -> None:
    # Given AlarmIngest dies right after its idempotency record is written (in progress)
    report = replay([alarm(0, "BX-1", 1)], [{"function": "AlarmIngest", "service": "dynamodb",
                                             "operation": "PutItem", "error": "crash"}])
    # Then the retry (after the function timeout) takes the record over and pushes once
    assert report["faults"][0]["fired"] == 1
    assert kinds(report) == [("alice", "alarm", 1), ("alice", "reminder", None)]


def test_schedules_are_retried_asynchronously_too() -> None:
    # Given both boxes drop together and the sweep's first Query is throttled
    events = [{"t": 10, "box": "BX-1", "type": "disconnected"}, {"t": 15, "box": "BX-2", "type": "disconnected"}]
    report = replay(events, [{"function": "OfflineSweep", "service": "dynamodb", "operation": "Query",
                              "error": "throttle", "from_t": 60, "to_t": 60}],
                    outage_radius_m=500, sweep_interval_s=60)
    # Then the fault fired in the sweep at 60 s, and the retried sweep found the cluster
    assert report["faults"][0]["fired"] == 1
    assert report["network"]["incidents"][0]["members"] == ["BX-1", "BX-2"]
    assert report["rejected"] == []


def test_after_lets_matching_calls_through_first() -> None:
    report = replay([alarm(0, "BX-1", 1), alarm(5, "BX-1", 2)],
                    [{"function": "AlarmIngest", "service": "sns", "operation": "Publish", "after": 1}])
    assert report["faults"][0]["fired"] == 1
    # (two repeats of one cause are one alarm with count 2: one reminder)
    assert kinds(report) == [("alice", "alarm", 1), ("alice", "alarm", 2), ("alice", "reminder", None)]


@pytest.mark.parametrize("fault", [{"function": "Nope", "service": "sns"},
                                   {"function": "AlarmIngest", "service": "sns", "error": "melt"},
                                   {"function": "AlarmIngest", "service": "sns", "when": 3},
                                   {"function": "AlarmIngest"}])
def test_a_malformed_fault_is_a_scenario_error(fault: dict[str, Any]) -> None:
    with pytest.raises(ScenarioError):
        replay([alarm(0, "BX-1", 1)], [fault])
