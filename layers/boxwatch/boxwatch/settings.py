"""Typed configuration. Handlers build it from their environment (set by template.yaml);
the domain only ever sees this object."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    boxes_table: str = "boxwatch-boxes"
    bindings_table: str = "boxwatch-bindings"
    alarms_table: str = "boxwatch-alarms"
    network_table: str = "boxwatch-network"
    commands_table: str = "boxwatch-commands"
    idempotency_table: str = "boxwatch-idempotency"  # powertools idempotency records
    rejected_input_queue: str = ""  # SQS queue URL where handlers dead-letter refused input

    neighbour_radius_m: float = Field(1000.0, gt=0, le=50_000)
    neighbour_window_s: int = Field(600, gt=0, le=86_400)
    alarm_max_age_s: int = Field(7 * 86_400, gt=0)
    alarm_max_future_s: int = Field(300, ge=0)
    alarm_retention_days: int = Field(90, gt=0)
    # flood hold-down per (box, cause): this many alarms pushed one by one per hold window
    alarm_burst: int = Field(3, ge=1, le=1000)
    alarm_repeat_hold_s: int = Field(300, gt=0, le=86_400)
    # an unacknowledged alarm: a reminder push after this, an SMS to the managers after twice this
    escalate_after_s: int = Field(300, gt=0, le=86_400)

    offline_watch_s: int = Field(300, gt=0)
    outage_radius_m: float = Field(500.0, gt=0, le=50_000)
    outage_max_gap_s: int = Field(60, gt=0)
    sweep_interval_s: int = Field(60, gt=0)
    # storm mode (boxwatch.storm): at least this share of the boxes within storm_radius_m, and at
    # least storm_min_boxes of them, offline in one cluster is an area outage
    storm_share: float = Field(0.3, gt=0, le=1)
    storm_radius_m: float = Field(2000.0, gt=0, le=50_000)
    storm_min_boxes: int = Field(200, ge=2)

    command_expiry_s: int = Field(120, gt=0, le=3600)

    sms_quota_table: str = "boxwatch-sms-quota"
    devices_table: str = "boxwatch-devices"
    # the SNS platform applications phones register with (POST /me/devices); "" = not configured
    fcm_application_arn: str = ""
    apns_application_arn: str = ""
    ops_table: str = "boxwatch-ops"  # the operators' change log and per-organisation alarm log
    sms_per_recipient_per_hour: int = Field(10, ge=1, le=1000)

    # the H3 resolutions of the alarm and area cell indexes: fixed, whatever the radii
    # (geo.ALARM_INDEX_RES, geo.INDEX_RES); geo is imported here, not at the top: it loads h3,
    # which the command handlers never use
    @cached_property
    def alarm_res(self) -> int:
        from boxwatch.geo import ALARM_INDEX_RES

        return ALARM_INDEX_RES

    @cached_property
    def area_res(self) -> int:
        from boxwatch.geo import INDEX_RES

        return INDEX_RES

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read UPPER_CASE variables named like the fields (e.g. NEIGHBOUR_RADIUS_M)."""
        values = {name: env[name.upper()] for name in cls.model_fields if name.upper() in env}
        return cls.model_validate(values)
