"""A replay scenario: the YAML a scenario file holds, and the error of an event replay cannot even
turn into an AWS message."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from boxwatch_infra.sandbox import DEFAULT_START


class ClientSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    boxes: list[str]
    locale: str = "zh-CN"
    role: str | None = None  # manager: an escalation contact of its boxes (with `sms`)
    sms: str | None = None  # E.164 number for escalation SMS


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")
    settings: dict[str, Any] = Field(default_factory=dict)
    start: datetime = DEFAULT_START
    boxes: list[dict[str, Any]] = Field(default_factory=list)
    clients: list[ClientSpec] = Field(default_factory=list)
    events: list[dict[str, Any]] = Field(default_factory=list)
    faults: list[dict[str, Any]] = Field(default_factory=list)  # replay/faults.py

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        return cls.model_validate(yaml.safe_load(Path(path).read_text()) or {})


def setting_to_parameter(name: str) -> str:
    """neighbour_radius_m -> NeighbourRadiusM (the template parameter of a setting)."""
    return "".join(part.capitalize() for part in name.split("_"))


class ScenarioError(ValueError):
    """An event replay cannot even turn into an AWS message."""
