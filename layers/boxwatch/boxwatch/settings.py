"""Typed configuration. Handlers build it from their environment (set by template.yaml);
the domain only ever sees this object.

A frozen dataclass checked in __post_init__, not a pydantic model: it is built once per container
at import, and pydantic's schema build for some forty fields cost a cold start ~30 ms."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


def _bounded(default: float, *, gt: float | None = None, ge: float | None = None,
             le: float | None = None) -> Any:
    return field(default=default, metadata={"gt": gt, "ge": ge, "le": le})


def _coerce(name: str, kind: str, value: Any) -> Any:
    """An environment string or a Python value as the field's type (str, int or float)."""
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"setting {name}: a string expected, got {value!r}")
        return value
    if isinstance(value, bool):
        raise ValueError(f"setting {name}: a number expected, got {value!r}")
    try:
        number = float(value) if isinstance(value, str) else value
    except ValueError:
        raise ValueError(f"setting {name}: a number expected, got {value!r}") from None
    if not isinstance(number, int | float) or not math.isfinite(number):
        raise ValueError(f"setting {name}: a finite number expected, got {value!r}")
    if kind == "int":
        if number != int(number):
            raise ValueError(f"setting {name}: a whole number expected, got {value!r}")
        return int(number)
    return float(number)


@dataclass(frozen=True)
class Settings:
    boxes_table: str = "boxwatch-boxes"
    bindings_table: str = "boxwatch-bindings"
    alarms_table: str = "boxwatch-alarms"
    network_table: str = "boxwatch-network"
    commands_table: str = "boxwatch-commands"
    idempotency_table: str = "boxwatch-idempotency"  # powertools idempotency records
    rejected_input_queue: str = ""  # SQS queue URL where handlers dead-letter refused input

    neighbour_radius_m: float = _bounded(1000.0, gt=0, le=50_000)
    neighbour_window_s: int = _bounded(600, gt=0, le=86_400)
    alarm_max_age_s: int = _bounded(7 * 86_400, gt=0)
    alarm_max_future_s: int = _bounded(300, ge=0)
    alarm_retention_days: int = _bounded(90, gt=0)
    # flood hold-down per (box, cause): this many alarms pushed one by one per hold window
    alarm_burst: int = _bounded(3, ge=1, le=1000)
    alarm_repeat_hold_s: int = _bounded(300, gt=0, le=86_400)
    # an unacknowledged alarm: a reminder push after this, an SMS to the managers after twice this
    escalate_after_s: int = _bounded(300, gt=0, le=86_400)

    offline_watch_s: int = _bounded(300, gt=0)
    outage_radius_m: float = _bounded(500.0, gt=0, le=50_000)
    outage_max_gap_s: int = _bounded(60, gt=0)
    sweep_interval_s: int = _bounded(60, gt=0)
    # storm mode (boxwatch.storm): at least this share of the boxes within storm_radius_m, and at
    # least storm_min_boxes of them, offline in one cluster is an area outage
    storm_share: float = _bounded(0.3, gt=0, le=1)
    storm_radius_m: float = _bounded(2000.0, gt=0, le=50_000)
    storm_min_boxes: int = _bounded(200, ge=2)
    # an incident this large has its warnings sent by OutageNotify workers, one per area part (the
    # H3 parent at sweep_part_res of the cells around it), through this queue ("" = in the sweep)
    sweep_fan_out_members: int = _bounded(2000, ge=2)
    sweep_part_res: int = _bounded(6, ge=0, le=7)
    outage_parts_queue: str = ""

    command_expiry_s: int = _bounded(120, gt=0, le=3600)

    sms_quota_table: str = "boxwatch-sms-quota"
    devices_table: str = "boxwatch-devices"
    # the SNS platform applications phones register with (POST /me/devices); "" = not configured
    fcm_application_arn: str = ""
    apns_application_arn: str = ""
    ops_table: str = "boxwatch-ops"  # the operators' change log and per-organisation alarm log
    sms_per_recipient_per_hour: int = _bounded(10, ge=1, le=1000)

    # the H3 resolutions of the alarm and area cell indexes: fixed, whatever the radii
    # (geo.ALARM_INDEX_RES, geo.INDEX_RES); geo is imported here, not at the top: it loads h3,
    # which the command handlers never use
    @property
    def alarm_res(self) -> int:
        from boxwatch.geo import ALARM_INDEX_RES

        return ALARM_INDEX_RES

    @property
    def area_res(self) -> int:
        from boxwatch.geo import INDEX_RES

        return INDEX_RES

    def __post_init__(self) -> None:
        for f in fields(self):
            value = _coerce(f.name, str(f.type), getattr(self, f.name))
            bounds = f.metadata
            if bounds.get("gt") is not None and not value > bounds["gt"]:
                raise ValueError(f"setting {f.name}: must be > {bounds['gt']}, got {value}")
            if bounds.get("ge") is not None and not value >= bounds["ge"]:
                raise ValueError(f"setting {f.name}: must be >= {bounds['ge']}, got {value}")
            if bounds.get("le") is not None and not value <= bounds["le"]:
                raise ValueError(f"setting {f.name}: must be <= {bounds['le']}, got {value}")
            object.__setattr__(self, f.name, value)  # frozen: the coerced value, once

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        """Settings from field names (strings as in an environment, or typed values); other keys ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read UPPER_CASE variables named like the fields (e.g. NEIGHBOUR_RADIUS_M)."""
        values: dict[str, Any] = {f.name: env[f.name.upper()] for f in fields(cls) if f.name.upper() in env}
        return cls(**values)
