"""Power-off as a real fleet delivers it, through `boxwatch replay`: shadow contention, a late
report after expiry, an idempotency key reused after its reservation expired (docs/claims.md
"Power-off result"; scenarios tests/scenarios/field_0{7,8}_*.yaml, field_11_*.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from boxwatch_infra.replay import Replay, Scenario

SCENARIOS = Path(__file__).parents[1] / "scenarios"


def run(name: str) -> dict[str, Any]:
    return Replay(Scenario.load(SCENARIOS / name)).run()


def results(report: dict[str, Any]) -> list[tuple[float, str, str]]:
    return [(n["t"], n["client"], n["status"]) for n in report["notifications"] if n["kind"] == "power_off_result"]


def test_confirmation_during_shadow_contention_settles_the_command() -> None:
    # Given alice's order in BX-1's shadow / When the box confirms while its shadow changes twice more
    report = run("field_07_shadow_conflict.yaml")
    # Then the contention was retried: succeeded, alice told once, nothing dead-lettered
    assert [c["status"] for c in report["commands"]] == ["succeeded"]
    assert results(report) == [(35.0, "alice", "succeeded")]
    assert report["rejected"] == []
    assert "desired" not in report["shadows"]["BX-1"]["state"]


def test_late_done_after_expiry_settles_succeeded_and_tells_the_requester() -> None:
    report = run("field_08_late_success.yaml")
    # Given both commands expired at the 120 s sweep
    # When BX-1 reports done at 200 s (twice) / Then alice hears expired, then succeeded, once each
    assert results(report) == [(120.0, "alice", "expired"), (120.0, "bob", "expired"), (200.0, "alice", "succeeded")]
    by_client = {c["client"]: c for c in report["commands"]}
    assert by_client["alice"]["status"] == "succeeded"
    # and a late failure report is recorded only: bob's command stays expired
    assert by_client["bob"]["status"] == "expired"
    assert report["rejected"] == []


def test_key_reused_after_its_reservation_expired_is_a_new_command() -> None:
    report = run("field_11_key_reuse.yaml")
    first, second = report["commands"]
    # Then the second request made a new command (201, another id), settled by the box, never a 500
    assert (first["http_status"], second["http_status"]) == (201, 201)
    assert first["command_id"] != second["command_id"]
    assert (first["status"], second["status"]) == ("succeeded", "succeeded")
    assert results(report) == [(5.0, "alice", "succeeded"), (35.0, "alice", "succeeded")]
    assert report["rejected"] == []
