"""The device contract (docs/device-contract.md) as pydantic models: what the IoT rules deliver."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from boxwatch import bounds
from boxwatch.errors import InvalidInput, Spoofed

BOX_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"  # AWS IoT thing-name alphabet


class Cause(StrEnum):
    OVERCURRENT = "overcurrent"
    OVERTEMP = "overtemp"
    RESIDUAL_CURRENT = "residual_current"
    OVERVOLTAGE = "overvoltage"
    UNDERVOLTAGE = "undervoltage"
    SHORT_CIRCUIT = "short_circuit"
    ARC_FAULT = "arc_fault"


DEFAULT_UNIT = {
    Cause.OVERCURRENT: "A",
    Cause.OVERTEMP: "degC",
    Cause.RESIDUAL_CURRENT: "mA",
    Cause.OVERVOLTAGE: "V",
    Cause.UNDERVOLTAGE: "V",
    Cause.SHORT_CIRCUIT: "A",
    Cause.ARC_FAULT: "count",
}


class AlarmEvent(BaseModel):
    """An alarm log as AlarmIngestRule delivers it: the box's payload plus what the rule adds
    (`thing` from the topic, `client_id` from the connection, `received_at` from IoT's clock)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    thing: str = Field(pattern=BOX_ID_PATTERN)
    client_id: str | None = None
    received_at: int = Field(gt=0, description="epoch ms, IoT Core's timestamp()")
    v: int = Field(1, ge=1, le=1)
    seq: int = Field(ge=1, le=2**53)
    cause: Cause
    alarm_time: int = Field(gt=0, description="epoch ms")
    value: float = Field(allow_inf_nan=False)
    threshold: float = Field(allow_inf_nan=False)
    unit: str | None = Field(None, max_length=8)
    circuit: str | None = Field(None, max_length=32)
    phase: str | None = Field(None, pattern=r"^(L1|L2|L3|N)$")

    @field_validator("unit", "circuit")
    @classmethod
    def _printable(cls, value: str | None, info: Any) -> str | None:
        # the box's own words reach a push (unit) and the table (both): printable, never refused
        # for a stray control character (the alarm matters more than its label)
        return bounds.optional_text(value, 8 if info.field_name == "unit" else 32)

    @model_validator(mode="after")
    def _unit(self) -> AlarmEvent:
        if self.unit is None:
            object.__setattr__(self, "unit", DEFAULT_UNIT[self.cause])
        return self

    @classmethod
    def parse(cls, event: Any) -> AlarmEvent:
        """Validate a rule event; raise InvalidInput/Spoofed with a readable message."""
        if not isinstance(event, dict):
            raise InvalidInput("alarm event must be a JSON object", got=type(event).__name__)
        if "box_id" in event:
            raise Spoofed("payload must not name a box; the box id comes from the topic", thing=event.get("thing"))
        try:
            alarm = cls.model_validate(event)
        except ValidationError as exc:
            raise InvalidInput(
                "alarm log failed validation",
                thing=bounds.text(event["thing"], 128) if isinstance(event.get("thing"), str) else None,
                problems=[  # a field name is the sender's too: bounded before it reaches the log
                    {"field": bounds.text(".".join(str(p) for p in e["loc"]), bounds.FIELD_CHARS),
                     "problem": bounds.text(e["msg"], bounds.TEXT_CHARS)} for e in exc.errors()[:10]
                ],
            ) from None
        if alarm.client_id is not None and alarm.client_id != alarm.thing:
            raise Spoofed("client id does not match the topic's box id", thing=alarm.thing, client_id=alarm.client_id)
        return alarm

    def check_time(self, max_age_s: int, max_future_s: int) -> None:
        if self.alarm_time > self.received_at + max_future_s * 1000:
            raise InvalidInput("alarm time is in the future", thing=self.thing, seq=self.seq)
        if self.alarm_time < self.received_at - max_age_s * 1000:
            raise InvalidInput("alarm time is too old", thing=self.thing, seq=self.seq)
