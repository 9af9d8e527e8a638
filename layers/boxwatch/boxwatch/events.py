"""What the handlers receive, as pydantic models, and the one way they are read: `parse(model, event)`.

- `AlarmEvent`: an alarm log as AlarmIngestRule delivers it (docs/device-contract.md);
- `PresenceEvent`: an AWS IoT lifecycle event as PresenceRule delivers it;
- `ScheduledEvent`: an EventBridge scheduled event (only its time matters);
- `ShadowDocuments`: a shadow's update/documents message as CommandAckRule delivers it;
- `OutagePartsEvent`: SQS messages from OfflineSweep to OutageNotify, each one area part of a
  large incident's warnings (boxwatch.outage.plan_parts).

Input that does not fit is refused with `InvalidInput` (or `Spoofed`), always in the same shape:
`"<what> must be a JSON object"` (detail `got`) or `"<what> failed validation"` with the event's
identity when it has a readable one (`thing`, `client_id`) and `problems`: up to ten
`{"field", "problem"}`, bounded (a field name is the sender's too).

Models build their validators on first use (`defer_build`): a handler pays for the one it reads.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Self, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Json,
    ValidationError,
    field_validator,
    model_validator,
)

from boxwatch import bounds
from boxwatch.contract import BOX_ID_PATTERN, DEFAULT_UNIT, Cause
from boxwatch.errors import InvalidInput, Spoofed

CLIENT_INITIATED = "CLIENT_INITIATED_DISCONNECT"
MAX_PROBLEMS = 10


class Inbound(BaseModel):
    """An event a handler receives. `WHAT` names it in refusals; `IDENTITY` is (detail, event key)
    of the string that tells an operator whose event it was."""

    model_config = ConfigDict(defer_build=True)
    WHAT: ClassVar[str] = "event"
    IDENTITY: ClassVar[tuple[str, str] | None] = None

    @classmethod
    def precheck(cls, event: dict[str, Any]) -> None:
        """Refusals decided before validation (the raw event says something it must not)."""

    def checked(self) -> Self:
        """Refusals decided after validation, across fields; returns the event."""
        return self

    @classmethod
    def parse(cls, event: Any) -> Self:
        return parse(cls, event)


M = TypeVar("M", bound=Inbound)


def parse(model: type[M], event: Any) -> M:
    """Validate `event` as `model`; raise InvalidInput (or the model's own refusal) otherwise."""
    if not isinstance(event, dict):
        raise InvalidInput(f"{model.WHAT} must be a JSON object", got=type(event).__name__)
    model.precheck(event)
    try:
        parsed = model.model_validate(event)
    except ValidationError as exc:
        identity: dict[str, Any] = {}
        if model.IDENTITY is not None:
            name, key = model.IDENTITY
            value = event.get(key)
            identity[name] = bounds.text(value, 128) if isinstance(value, str) else None
        raise InvalidInput(
            f"{model.WHAT} failed validation", **identity,
            problems=[{"field": bounds.text(".".join(str(p) for p in e["loc"]), bounds.FIELD_CHARS),
                       "problem": bounds.text(e["msg"], bounds.TEXT_CHARS)} for e in exc.errors()[:MAX_PROBLEMS]],
        ) from None
    return parsed.checked()


class AlarmEvent(Inbound):
    """An alarm log as AlarmIngestRule delivers it: the box's payload plus what the rule adds
    (`thing` from the topic, `client_id` from the connection, `received_at` from IoT's clock)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    WHAT = "alarm log"
    IDENTITY = ("thing", "thing")

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
    # "cleared": the box's detector released (hysteresis); absent or "active": an alarm
    state: Literal["active", "cleared"] | None = None

    @property
    def clears(self) -> bool:
        return self.state == "cleared"

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
    def precheck(cls, event: dict[str, Any]) -> None:
        if "box_id" in event:
            raise Spoofed("payload must not name a box; the box id comes from the topic", thing=event.get("thing"))

    def checked(self) -> Self:
        if self.client_id is not None and self.client_id != self.thing:
            raise Spoofed("client id does not match the topic's box id", thing=self.thing, client_id=self.client_id)
        return self

    def check_time(self, max_age_s: int, max_future_s: int) -> None:
        if self.alarm_time > self.received_at + max_future_s * 1000:
            raise InvalidInput("alarm time is in the future", thing=self.thing, seq=self.seq)
        if self.alarm_time < self.received_at - max_age_s * 1000:
            raise InvalidInput("alarm time is too old", thing=self.thing, seq=self.seq)


class PresenceEvent(Inbound):
    """An AWS IoT Core connect/disconnect lifecycle event, as AWS documents it, plus the PresenceRule's
    `received_at` (IoT Core's `timestamp()` when the event arrived)."""

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)
    WHAT = "lifecycle event"
    IDENTITY = ("client_id", "clientId")

    client_id: str = Field(alias="clientId", pattern=BOX_ID_PATTERN)
    thing_name: str | None = Field(None, alias="thingName", pattern=BOX_ID_PATTERN)
    event_type: Literal["connected", "disconnected"] = Field(alias="eventType")
    # strict: AWS sends integers; a float (5.0) or a bool is not a lifecycle event's number
    timestamp: int = Field(gt=0, strict=True, description="epoch ms")
    version: int = Field(alias="versionNumber", ge=0, strict=True)
    session_identifier: str | None = Field(None, alias="sessionIdentifier", max_length=128)
    client_initiated_disconnect: bool | None = Field(None, alias="clientInitiatedDisconnect")
    disconnect_reason: str | None = Field(None, alias="disconnectReason", max_length=64)
    received_at: int | None = Field(None, gt=0, description="epoch ms, added by the rule")

    @property
    def box_id(self) -> str:
        # thingName is present only with the exclusive-thing feature; our boxes use it as client id
        return self.thing_name or self.client_id

    @property
    def online(self) -> bool:
        return self.event_type == "connected"

    @property
    def clean(self) -> bool:
        """The box said goodbye (MQTT DISCONNECT): not a sign of fire or power loss."""
        return bool(self.client_initiated_disconnect) or self.disconnect_reason == CLIENT_INITIATED

    @property
    def arrived_at(self) -> int:
        """When the event reached IoT Core; an event without the rule's stamp (a hand-made test
        event, a dead letter of an older rule) counts as arrived at its own time."""
        return self.received_at if self.received_at is not None else self.timestamp


class ScheduledEvent(Inbound):
    """The EventBridge scheduled event; only its `time` matters (the sweep's event time)."""

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)
    WHAT = "scheduled event"

    id: str | None = None
    detail_type: str = Field("Scheduled Event", alias="detail-type")
    time: AwareDatetime

    @property
    def at_ms(self) -> int:
        return int(self.time.timestamp() * 1000)


class ShadowDocuments(Inbound):
    """`$aws/things/<thing>/shadow/update/documents`, plus the thing name the rule takes from the topic."""

    model_config = ConfigDict(extra="allow", defer_build=True)
    WHAT = "shadow documents"
    IDENTITY = ("thing", "thing")

    thing: str = Field(pattern=BOX_ID_PATTERN)
    previous: dict[str, Any] | None = None
    current: dict[str, Any]
    timestamp: int = Field(ge=0)


H3_CELL = r"^[0-9a-f]{15}$"


class OutagePart(BaseModel):
    """One part of a large incident's warnings, as OfflineSweep decided them at `at_ms`."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    incident: str = Field(min_length=1, max_length=200)
    at_ms: int = Field(ge=0, description="the deciding sweep's event time, epoch ms")
    part: str = Field(pattern=H3_CELL)
    cells: list[str] = Field(min_length=1, max_length=10_000)  # area cells that may hold recipients
    member_cells: list[str] = Field(max_length=10_000)  # area cells holding members within reach of them
    seq: int = Field(ge=1)  # the incident's highest member number when decided
    count: int = Field(ge=1)  # the incident's members
    open_count: int = Field(ge=0)  # of them still offline (an area outage's count)
    first_offline_at: int = Field(ge=0)
    last_offline_at: int = Field(ge=0)

    @field_validator("cells", "member_cells")
    @classmethod
    def _cells(cls, value: list[str]) -> list[str]:
        import re

        if not all(re.fullmatch(H3_CELL, c) for c in value):
            raise ValueError("H3 cell ids (15 hex digits) expected")
        return value


class PartRecord(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    messageId: str  # SQS's own field name
    body: Json[OutagePart]


class OutagePartsEvent(Inbound):
    """What Lambda's SQS event source hands OutageNotify: a batch of part messages."""

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)
    WHAT = "outage parts"

    Records: list[PartRecord] = Field(min_length=1)  # the event's own field name
