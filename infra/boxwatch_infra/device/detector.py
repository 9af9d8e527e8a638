"""The electrical-fire monitoring detector: thresholds, debounce, hysteresis, alarm logs and the
clear message when the hysteresis releases.

Each cause has a condition (value over its threshold) that must hold for its delay before the
detector alarms (debounce: a blip shorter than the delay raises nothing), and it re-arms only once
the value has fallen below the threshold by the hysteresis band, so a value hovering at the
threshold raises one alarm per excursion, not fifty. The detector alarms; it never opens the
contactor (GB 50116). Sequence numbers persist on disk and survive restarts.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boxwatch_infra.device.model import Measurements

# ranges of commercial electrical-fire monitoring detectors (GB 14287 class products)
RESIDUAL_RANGE_MA = (20.0, 1000.0)
TEMP_RANGE_C = (45.0, 140.0)
OVERCURRENT_MULTIPLE_RANGE = (1.05, 2.0)
DELAY_RANGE_S = (0.0, 30.0)


@dataclass(frozen=True)
class Thresholds:
    residual_ma: float = 300.0
    cable_temp_c: float = 80.0
    overcurrent_multiple: float = 1.2  # of the main switch's rated current
    delay_s: float = 10.0  # a condition must hold this long before it alarms
    hysteresis: float = 0.05  # re-arm below threshold x (1 - hysteresis)
    clear_messages: bool = True  # send a clear message (state: cleared, its own seq) on re-arm

    def __post_init__(self) -> None:
        for name, value, (lo, hi) in (
            ("residual_ma", self.residual_ma, RESIDUAL_RANGE_MA),
            ("cable_temp_c", self.cable_temp_c, TEMP_RANGE_C),
            ("overcurrent_multiple", self.overcurrent_multiple, OVERCURRENT_MULTIPLE_RANGE),
            ("delay_s", self.delay_s, DELAY_RANGE_S),
        ):
            if not lo <= value <= hi:
                raise ValueError(f"{name}={value} outside the detector's range {lo}..{hi}")
        if not 0.0 <= self.hysteresis < 0.5:
            raise ValueError("hysteresis must be a fraction in [0, 0.5)")


class SequenceStore:
    """The next sequence number, on disk, written atomically (rename) before an alarm leaves."""

    def __init__(self, path: Path):
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _read(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
            return data
        except (FileNotFoundError, ValueError):
            return {}

    def next(self) -> int:
        state = self._read()
        seq = int(state.get("seq", 0)) + 1
        state["seq"] = seq
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".seq")
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        return seq


@dataclass
class _Channel:
    cause: str
    unit: str
    above_since: float | None = None
    armed: bool = True


@dataclass
class Detector:
    rated_current_a: float
    seq_store: SequenceStore
    thresholds: Thresholds = field(default_factory=Thresholds)
    channels: dict[str, _Channel] = field(default_factory=dict)

    def _threshold(self, cause: str) -> float:
        t = self.thresholds
        return {"residual_current": t.residual_ma, "overtemp": t.cable_temp_c,
                "overcurrent": t.overcurrent_multiple * self.rated_current_a}[cause]

    def _readings(self, m: Measurements) -> list[tuple[str, str, float, str | None]]:
        phase, current = max(m.phase_current_a.items(), key=lambda kv: kv[1], default=("L1", 0.0))
        return [
            ("residual_current", "mA", m.residual_ma, None),
            ("overtemp", "degC", m.cable_temp_c, None),
            ("overcurrent", "A", current, phase),
        ]

    def step(self, m: Measurements, now_ms: int) -> list[dict[str, Any]]:
        """Feed one sample; return the alarm logs it raises (docs/device-contract.md payloads)."""
        alarms = []
        for cause, unit, value, phase in self._readings(m):
            ch = self.channels.setdefault(cause, _Channel(cause, unit))
            threshold = self._threshold(cause)
            if value >= threshold:
                if ch.above_since is None:
                    ch.above_since = m.t
                if ch.armed and m.t - ch.above_since >= self.thresholds.delay_s:
                    ch.armed = False
                    alarms.append({"v": 1, "seq": self.seq_store.next(), "cause": cause, "alarm_time": now_ms,
                                   "value": round(value, 2), "threshold": round(threshold, 2), "unit": unit,
                                   "circuit": "main", **({"phase": phase} if phase else {})})
            else:
                ch.above_since = None
                if value < threshold * (1 - self.thresholds.hysteresis):
                    if not ch.armed and self.thresholds.clear_messages:
                        # the hysteresis released: the cloud clears the box's alarm of this cause
                        alarms.append({"v": 1, "seq": self.seq_store.next(), "state": "cleared", "cause": cause,
                                       "alarm_time": now_ms, "value": round(value, 2),
                                       "threshold": round(threshold, 2), "unit": unit, "circuit": "main"})
                    ch.armed = True
        return alarms
