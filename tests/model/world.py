"""What the model knows besides the rules: settings, distances, and the order in which replay
delivers a scenario (docs/replay.md, docs/claims.md "processing order").

Settings come from the scenario, else from template.yaml's parameter defaults, else from the
defaults that docs/claims.md states. The order is rebuilt here from the scenario alone; the
harness checks that replay delivered exactly these steps.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# docs/claims.md (Fourth alarm): a pending claim is its sweep's for 120 s of schedule time
CLAIM_LEASE_S = 120.0

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"

# h3's sphere (h3.great_circle_distance): the authalic radius of the WGS84 ellipsoid
EARTH_RADIUS_M = 6371007.180918475

# the device contract's causes (docs/device-contract.md)
CAUSES = ("overcurrent", "overtemp", "residual_current", "overvoltage", "undervoltage", "short_circuit", "arc_fault")
CLEAN_REASON = "CLIENT_INITIATED_DISCONNECT"
DEFAULT_REASON = "MQTT_KEEP_ALIVE_TIMEOUT"
FUTURE_SKEW_MS = 5 * 60_000  # an alarm time at most 5 min newer than its arrival (contract)

# docs/claims.md defaults for parameters the template may not declare (yet)
CLAIMS_DEFAULTS = {"AlarmBurst": 3, "AlarmRepeatHoldS": 300, "EscalateAfterS": 300}

OFFLINE_SWEEP = "OfflineSweepFunction"
COMMAND_SWEEP = "CommandExpiryFunction"


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle (haversine) distance on h3's sphere."""
    lat1, lng1, lat2, lng2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lng2 - lng1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def parameter_name(setting: str) -> str:
    """neighbour_radius_m -> NeighbourRadiusM (replay's mapping)."""
    return "".join(part.capitalize() for part in setting.split("_"))


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation short tags (!Ref X -> {"Ref": X}) without resolving anything."""


def _cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        return {name: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {name: loader.construct_sequence(node, deep=True)}
    return {name: loader.construct_mapping(node, deep=True)}  # type: ignore[arg-type]


_CfnLoader.add_multi_constructor("!", _cfn_tag)
_TEMPLATE_CACHE: dict[Path, dict[str, Any]] = {}


def template_doc(path: Path = TEMPLATE) -> dict[str, Any]:
    if path not in _TEMPLATE_CACHE:
        _TEMPLATE_CACHE[path] = yaml.load(path.read_text(), Loader=_CfnLoader)
    return _TEMPLATE_CACHE[path]


def template_parameters(path: Path = TEMPLATE) -> set[str]:
    return set(template_doc(path).get("Parameters", {}))


def rate_seconds(expr: str) -> int:
    m = re.fullmatch(r"rate\((\d+)\s+(second|minute|hour|day)s?\)", expr.strip())
    if not m:
        raise ValueError(f"only rate() schedules are modelled, got {expr!r}")
    return int(m.group(1)) * {"second": 1, "minute": 60, "hour": 3600, "day": 86400}[m.group(2)]


@dataclass(frozen=True)
class Settings:
    """Every parameter a rule uses, in metres and milliseconds."""

    neighbour_radius_m: float
    neighbour_window_ms: int
    offline_watch_ms: int
    outage_radius_m: float
    outage_max_gap_ms: int
    command_expiry_ms: int
    alarm_burst: int
    alarm_hold_ms: int
    alarm_max_age_ms: int
    escalate_after_ms: int = 300_000
    # storm mode (docs/claims.md "Storm mode")
    storm_share: float = 0.3
    storm_radius_m: float = 2000.0
    storm_min_boxes: int = 200
    sms_per_hour: int = 10  # SmsPerRecipientPerHour: escalation SMS per number and hour
    # (function logical id, period s) of every Schedule event, in template order
    schedules: tuple[tuple[str, int], ...] = field(default=())
    # what settle_s is made of (replay keeps sweeping this long after the last event)
    settle_s: float = 0.0

    @classmethod
    def for_scenario(cls, scenario: dict[str, Any], path: Path = TEMPLATE) -> Settings:
        doc = template_doc(path)
        values: dict[str, Any] = {k: spec.get("Default") for k, spec in doc.get("Parameters", {}).items()}
        for k, v in CLAIMS_DEFAULTS.items():
            values.setdefault(k, v)
        given = dict(scenario.get("settings") or {})
        values.update({parameter_name(k): v for k, v in given.items()})
        if "sweep_interval_s" in given and "sweep_schedule" not in given:
            values["SweepSchedule"] = f"rate({int(given['sweep_interval_s'])} seconds)"  # as replay does

        def num(name: str) -> float:
            return float(values[name])

        schedules = []
        for logical, res in doc.get("Resources", {}).items():
            if res.get("Type") != "AWS::Serverless::Function":
                continue
            for ev in (res.get("Properties", {}).get("Events") or {}).values():
                if ev.get("Type") == "Schedule":
                    expr = ev["Properties"]["Schedule"]
                    if isinstance(expr, dict) and "Ref" in expr:
                        expr = values[expr["Ref"]]
                    schedules.append((logical, rate_seconds(str(expr))))
        periods = [p for _, p in schedules]
        settle = (max(num("OfflineWatchS"), num("OutageMaxGapS"), num("CommandExpiryS"), num("AlarmRepeatHoldS"))
                  + 2 * max(periods)
                  if periods else 0.0)
        return cls(
            neighbour_radius_m=num("NeighbourRadiusM"),
            neighbour_window_ms=round(num("NeighbourWindowS") * 1000),
            offline_watch_ms=round(num("OfflineWatchS") * 1000),
            outage_radius_m=num("OutageRadiusM"),
            outage_max_gap_ms=round(num("OutageMaxGapS") * 1000),
            command_expiry_ms=round(num("CommandExpiryS") * 1000),
            alarm_burst=int(num("AlarmBurst")),
            alarm_hold_ms=round(num("AlarmRepeatHoldS") * 1000),
            alarm_max_age_ms=round(num("AlarmMaxAgeS") * 1000),
            escalate_after_ms=round(num("EscalateAfterS") * 1000),
            storm_share=num("StormShare"),
            storm_radius_m=num("StormRadiusM"),
            storm_min_boxes=int(num("StormMinBoxes")),
            sms_per_hour=int(num("SmsPerRecipientPerHour")),
            schedules=tuple(schedules),
            settle_s=settle,
        )

    @property
    def max_period_ms(self) -> int:
        return max((p for _, p in self.schedules), default=0) * 1000


@dataclass(frozen=True)
class Step:
    """One delivery, in replay's order: a scenario event, or one scheduled function's tick."""

    index: int
    t: float  # arrival (virtual seconds)
    kind: str  # "event" | "tick"
    event: dict[str, Any] | None = None
    function: str | None = None  # tick: the scheduled function

    @property
    def ms(self) -> int:
        return round(self.t * 1000)

    def describe(self) -> tuple[float, str, str]:
        return (self.t, self.kind, str(self.function if self.kind == "tick" else (self.event or {}).get("type")))


def timeline(scenario: dict[str, Any], settings: Settings) -> list[Step]:
    """Events by arrival `t` (ties: file order), each schedule every period up to the last event
    plus the settle time, events before the ticks that fall on the same `t`."""
    events = sorted(enumerate(scenario.get("events") or []), key=lambda ie: (float(ie[1].get("t", 0)), ie[0]))
    last = max((float(e.get("t", 0)) for _, e in events), default=0.0)
    # with faults a sweep may die holding a warning's claim: replay runs on until its lease is over
    end = last + settings.settle_s + (CLAIM_LEASE_S if scenario.get("faults") else 0.0)
    ticks = sorted((float(k * period), fn) for fn, period in settings.schedules
                   for k in range(1, int(end // period) + 1))
    items: list[tuple[float, int, Any]] = [(float(e.get("t", 0)), 0, e) for _, e in events]
    items += [(t, 1, fn) for t, fn in ticks]
    items.sort(key=lambda x: (x[0], x[1]))
    return [Step(i, t, "event", event=item) if kind == 0 else Step(i, t, "tick", function=item)
            for i, (t, kind, item) in enumerate(items)]


def env_choice(name: str, known: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated subset of `known` from the environment variable `name` (default: all)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return known
    chosen = tuple(k.strip() for k in raw.split(",") if k.strip())
    unknown = set(chosen) - set(known)
    if unknown:
        raise ValueError(f"{name}: unknown {sorted(unknown)}; known: {known}")
    return chosen
