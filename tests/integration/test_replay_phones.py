"""Phones that register themselves, through `boxwatch replay` (POST /me/devices on the real
handler, pushes read back from moto's SNS): register, re-register the same token, move it to
another user, a token SNS reports dead, and a client that never registers (tests/scenarios/phones_register.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from boxwatch_infra.replay import Replay, Scenario

SCENARIO = Path(__file__).parents[1] / "scenarios" / "phones_register.yaml"


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return Replay(Scenario.load(SCENARIO)).run()


def pushes(report: dict[str, Any], t: float) -> list[tuple[str, str]]:
    return sorted((n["client"], n["box"]) for n in report["notifications"] if n["t"] == t)


def test_re_registering_the_same_token_keeps_one_device_and_endpoint(report: dict[str, Any]) -> None:
    # Given alice registered her phone's token twice and her iPad once
    # When BX-1 alarms at 30 s / Then each of her two devices gets it once, and carol's phone too
    assert pushes(report, 30.0) == [("alice", "BX-1"), ("alice", "BX-1"), ("carol", "BX-1")]
    endpoints = [d["endpoint"] for ds in report["devices"].values() for d in ds]
    assert len(endpoints) == len(set(endpoints))


def test_a_token_moved_to_another_user_is_moved_not_shared(report: dict[str, Any]) -> None:
    # Given bob registered (at 100 s) the token alice registered first
    # When BX-1 (alice's) alarms / Then that phone no longer gets BX-1's pushes: alice's iPad does
    assert pushes(report, 130.0) == [("alice", "BX-1"), ("carol", "BX-1")]
    # and BX-2 (bob's) reaches the phone, as bob's
    assert pushes(report, 160.0) == [("bob", "BX-2")]
    # one owner: the fcm device is bob's only
    platforms = {c: sorted(d["platform"] for d in ds) for c, ds in report["devices"].items()}
    assert platforms == {"alice": ["apns"], "bob": ["fcm"], "carol": ["fcm"]}


def test_a_disabled_endpoint_is_marked_skipped_and_enabled_by_registering_again(report: dict[str, Any]) -> None:
    # Given APNs reported alice's iPad token dead at 200 s
    # When BX-1 alarms at 230 and 260 / Then only carol hears
    assert pushes(report, 230.0) == [("carol", "BX-1")]
    assert pushes(report, 260.0) == [("carol", "BX-1")]
    # and the iPad was tried once (230: EndpointDisabled, marked), not at 260: AlarmIngest's
    # Publish calls are the pushes plus that one refused attempt
    ingest = [n for n in report["notifications"] if n["kind"] == "alarm"]
    assert report["aws_calls_by_function"]["AlarmIngestFunction"]["sns"] == len(ingest) + 1
    # When alice's app registers the token again (300 s) / Then she hears again (330 s)
    assert pushes(report, 330.0) == [("alice", "BX-1"), ("carol", "BX-1")]
    assert all(d["enabled"] for ds in report["devices"].values() for d in ds)


def test_only_the_owner_may_delete_a_device(report: dict[str, Any]) -> None:
    # When bob deletes alice's iPad by its id / Then it is "no such device", and it stays alice's
    assert [(r["t"], r["error"], r["http_status"]) for r in report["rejected"]] == [(400.0, "not_found", 404)]
    assert [d["platform"] for d in report["devices"]["alice"]] == ["apns"]
