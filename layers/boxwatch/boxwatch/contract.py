"""The device contract (docs/device-contract.md): the box id alphabet and the alarm causes with their
default units. The alarm log itself is `boxwatch.events.AlarmEvent`."""

from __future__ import annotations

from enum import StrEnum

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
