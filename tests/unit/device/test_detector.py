"""The detector in virtual time: one alarm per excursion, debounce, delay, persistent sequence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from boxwatch_infra.device.detector import Detector, SequenceStore, Thresholds
from boxwatch_infra.device.model import DistributionBox, Profile

T0_MS = 1_767_225_600_000


def run(box: DistributionBox, detector: Detector, seconds: int, start: int = 0) -> list[tuple[int, dict[str, Any]]]:
    """Sample once a second, like the monitoring unit."""
    out = []
    for t in range(start, start + seconds):
        for alarm in detector.step(box.sample(t), T0_MS + t * 1000):
            out.append((t, alarm))
    return out


def make(tmp_path: Path, **thresholds: Any) -> tuple[DistributionBox, Detector]:
    box = DistributionBox.standard("BX-1")
    return box, Detector(box.rated_current_a, SequenceStore(tmp_path / "seq.json"), Thresholds(**thresholds))


def test_value_hovering_at_the_threshold_raises_one_alarm(tmp_path: Path) -> None:
    # Given a cable temperature held over 80 degC, then hovering around it (79.5 / 80.5) for ten minutes
    box, det = make(tmp_path, delay_s=5)
    box.cable_temp_c = Profile(35.0).set(0, 82.0)
    for k in range(10, 600):
        box.cable_temp_c.set(float(k), 80.5 if k % 2 else 79.5)
    # When the detector samples it / Then it alarms once, not fifty times
    alarms = run(box, det, 600)
    assert [a["cause"] for _, a in alarms] == ["overtemp"]


def test_each_excursion_alarms_once_after_falling_below_the_hysteresis(tmp_path: Path) -> None:
    box, det = make(tmp_path, delay_s=5)
    box.cable_temp_c = Profile(35.0).set(10, 90).set(60, 70).set(100, 90)  # 70 < 80 x 0.95: re-armed
    assert [a.get("state", "active") for _, a in run(box, det, 200)] == ["active", "cleared", "active"]


def test_the_hysteresis_releasing_sends_a_clear_message_with_its_own_seq(tmp_path: Path) -> None:
    # Given a cable over 80 degC from t=10, back to 70 degC (below 80 x 0.95) at t=60
    box, det = make(tmp_path, delay_s=5)
    box.cable_temp_c = Profile(35.0).set(10, 90).set(60, 70)
    # When the detector samples it / Then an alarm, then a clear of that cause at t=60 (contract v1)
    [(_, alarm), (t, clear)] = run(box, det, 120)
    assert t == 60
    assert clear == {"v": 1, "seq": alarm["seq"] + 1, "state": "cleared", "cause": "overtemp",
                     "alarm_time": T0_MS + 60_000, "value": 70.0, "threshold": 80.0, "unit": "degC", "circuit": "main"}
    # and a detector told not to sends none
    box2, quiet = make(tmp_path / "q", delay_s=5, clear_messages=False)
    box2.cable_temp_c = Profile(35.0).set(10, 90).set(60, 70)
    assert len(run(box2, quiet, 120)) == 1


def test_held_condition_alarms_within_30s_and_carries_the_contract_fields(tmp_path: Path) -> None:
    # Given residual current rising to 450 mA at t=100 and staying there
    box, det = make(tmp_path, delay_s=10)
    box.leakage_ma = Profile(5.0).set(100, 450)
    # When / Then the alarm comes after the delay, within 30 s
    [(t, alarm)] = run(box, det, 300)
    assert 100 + 10 <= t <= 100 + 30
    assert alarm == {"v": 1, "seq": 1, "cause": "residual_current", "alarm_time": T0_MS + t * 1000,
                     "value": 450.0, "threshold": 300.0, "unit": "mA", "circuit": "main"}


def test_blip_shorter_than_the_delay_raises_nothing(tmp_path: Path) -> None:
    box, det = make(tmp_path, delay_s=10)
    box.leakage_ma = Profile(5.0).set(100, 900).set(106, 5)  # a 6 s inrush/leak blip
    assert run(box, det, 300) == []


def test_overcurrent_is_a_multiple_of_rated_current_with_its_phase(tmp_path: Path) -> None:
    box, det = make(tmp_path, delay_s=3, overcurrent_multiple=1.2)
    for b in box.branches:
        b.load_a = Profile(6.0).set(50, 25.0)  # 4 branches x 25 A = 100 A on L1 > 1.2 x 63 A
    [(_, alarm)] = run(box, det, 100)
    assert alarm["cause"] == "overcurrent" and alarm["phase"] == "L1" and alarm["threshold"] == 75.6


def test_sequence_numbers_are_monotonic_across_a_restart(tmp_path: Path) -> None:
    box, det = make(tmp_path, delay_s=1)
    box.cable_temp_c = Profile(35.0).set(5, 90).set(20, 35).set(30, 90)
    first = [a["seq"] for _, a in run(box, det, 40)]
    # When the box restarts (a new detector on the same state directory)
    box2, det2 = make(tmp_path, delay_s=1)
    box2.cable_temp_c = Profile(35.0).set(5, 95)
    second = [a["seq"] for _, a in run(box2, det2, 40)]
    assert first == [1, 2, 3] and second == [4]  # alarm, clear, alarm; then the next number


def test_thresholds_outside_real_detector_ranges_are_refused() -> None:
    with pytest.raises(ValueError, match="residual_ma"):
        Thresholds(residual_ma=5)
    with pytest.raises(ValueError, match="cable_temp_c"):
        Thresholds(cable_temp_c=300)
    with pytest.raises(ValueError, match="delay_s"):
        Thresholds(delay_s=120)


def test_contactor_opens_on_order_unless_welded_and_a_short_trips_the_main_switch() -> None:
    box = DistributionBox.standard("BX-1", three_phase=True)
    assert box.open_contactor() and box.sample(0).phase_current_a == {"L1": 0.0, "L2": 0.0, "L3": 0.0}
    welded = DistributionBox.standard("BX-2")
    welded.contactor_welded = True
    assert not welded.open_contactor() and welded.contactor_closed
    short = DistributionBox.standard("BX-3")
    short.branches[0].load_a = Profile(6.0).set(10, 2000.0)
    assert short.sample(11).main_closed is False and short.sample(12).residual_ma == 0.0
