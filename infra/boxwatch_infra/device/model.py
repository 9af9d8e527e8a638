"""The smart distribution box as an electrical model, driven by a virtual clock.

Supply (single- or three-phase) -> main protection switch (rated current, can trip) -> residual
current transformer on the incoming line -> cable temperature sensor (between main switch and
contactor) -> contactor (its coil driven by the monitoring unit; opens on a remote order, can be
welded shut) -> N branch switches with loads. Loads, leakage and cable temperature follow a fault
profile: piecewise-linear values over time. Nothing here reads the wall clock: `now_s` comes in.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

PHASES_1 = ("L1",)
PHASES_3 = ("L1", "L2", "L3")


@dataclass
class Profile:
    """A value over time: linear between points, held before the first and after the last.

    A fault is scripted by adding points, e.g. a cable heating from 40 to 95 degC over 60 s:
    `Profile(40).ramp(100, 160, 95)`.
    """

    base: float
    points: list[tuple[float, float]] = field(default_factory=list)

    def at(self, t: float) -> float:
        if not self.points:
            return self.base
        times = [p[0] for p in self.points]
        i = bisect.bisect_right(times, t)
        if i == 0:
            return self.base
        if i == len(self.points):
            return self.points[-1][1]
        (t0, v0), (t1, v1) = self.points[i - 1], self.points[i]
        return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)

    def set(self, t: float, value: float) -> Profile:
        """Step to `value` at `t` (and hold it)."""
        before = self.at(t)
        self.points = [p for p in self.points if p[0] < t] + [(t, before), (t, value)]
        return self

    def ramp(self, t0: float, t1: float, value: float) -> Profile:
        """Go linearly from the value at t0 to `value` at t1."""
        start = self.at(t0)
        self.points = [p for p in self.points if p[0] < t0] + [(t0, start), (t1, value)]
        return self


@dataclass
class Branch:
    name: str
    phase: str
    load_a: Profile
    closed: bool = True


@dataclass
class Measurements:
    """What the monitoring unit's sensors read at one instant."""

    t: float
    phase_current_a: dict[str, float]
    residual_ma: float
    cable_temp_c: float
    voltage_v: float
    main_closed: bool
    contactor_closed: bool


@dataclass
class DistributionBox:
    box_id: str
    phases: tuple[str, ...] = PHASES_1
    rated_current_a: float = 63.0
    voltage_v: float = 230.0
    branches: list[Branch] = field(default_factory=list)
    leakage_ma: Profile = field(default_factory=lambda: Profile(5.0))
    cable_temp_c: Profile = field(default_factory=lambda: Profile(35.0))
    supply_v: Profile | None = None
    main_closed: bool = True
    contactor_closed: bool = True
    contactor_welded: bool = False  # a welded contactor cannot open: the remote order fails
    trip_multiple: float = 10.0  # the main switch's instantaneous trip (short circuit)

    @classmethod
    def standard(cls, box_id: str, three_phase: bool = False, n_branches: int = 4) -> DistributionBox:
        phases = PHASES_3 if three_phase else PHASES_1
        branches = [Branch(f"branch-{i + 1}", phases[i % len(phases)], Profile(6.0)) for i in range(n_branches)]
        return cls(box_id, phases=phases, branches=branches)

    def open_contactor(self) -> bool:
        """The monitoring unit drops the coil. Returns whether the contacts really opened."""
        if self.contactor_welded:
            return False
        self.contactor_closed = False
        return True

    def close_contactor(self) -> None:
        self.contactor_closed = True

    def sample(self, t: float) -> Measurements:
        live = self.main_closed and self.contactor_closed
        per_phase = dict.fromkeys(self.phases, 0.0)
        if live:
            for b in self.branches:
                if b.closed:
                    per_phase[b.phase] = per_phase.get(b.phase, 0.0) + max(0.0, b.load_a.at(t))
        # the main switch trips on a short circuit (instantaneous magnetic release)
        if live and max(per_phase.values(), default=0.0) >= self.trip_multiple * self.rated_current_a:
            self.main_closed = False
        # the residual current transformer sits on the incoming line: it sees leakage while energised
        residual = self.leakage_ma.at(t) if self.main_closed else 0.0
        voltage = (self.supply_v.at(t) if self.supply_v else self.voltage_v) if self.main_closed else 0.0
        return Measurements(t, per_phase, residual, self.cable_temp_c.at(t), voltage, self.main_closed,
                            self.contactor_closed)
