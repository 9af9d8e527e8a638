"""The device shadow as the power-off lifecycle uses it: read the document, write `desired` with the
version just read (no lost update), retry a concurrent change with backoff.

The order's fields are the device contract's (docs/device-contract.md): `power`, `command_id`,
`expires_at` under `state.desired`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_iot_data import IoTDataPlaneClient

# a shadow changing under us (the box reporting, another order) is retried here with backoff, then
# by Lambda (the error is not a refusal): 5 tries over ~0.3 s
SHADOW_TRIES = 5
SHADOW_BACKOFF_S = 0.02
CLEAR_ORDER = {"power": None, "command_id": None, "expires_at": None}


class ShadowContention(RuntimeError):
    """The shadow's version kept changing while we wrote it: retryable, never bad input."""


def read_shadow(iotdata: IoTDataPlaneClient, box_id: str) -> dict[str, Any] | None:
    """The shadow document, or None when the box has none yet."""
    try:
        doc: dict[str, Any] = json.loads(iotdata.get_thing_shadow(thingName=box_id)["payload"].read())
        return doc
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise


def update_desired(iotdata: IoTDataPlaneClient, box_id: str, desired: dict[str, Any],
                   when: Callable[[str | None], bool] | None = None) -> bool:
    """Write `desired` with the version just read, retrying with backoff on a concurrent update.

    With `when`, change nothing unless it accepts the command id the shadow holds now (a newer
    command must not be cleared by an older one's settlement, nor overwritten by a repeat).
    Raises ShadowContention (retryable) when the shadow kept changing."""
    for attempt in range(SHADOW_TRIES):
        if attempt:
            time.sleep(SHADOW_BACKOFF_S * 2 ** (attempt - 1))
        doc = read_shadow(iotdata, box_id)
        if when is not None:
            current = ((doc or {}).get("state", {}).get("desired") or {}).get("command_id")
            if not when(current):
                return False
        payload: dict[str, Any] = {"state": {"desired": desired}}
        if doc is not None:
            payload["version"] = doc["version"]
        try:
            iotdata.update_thing_shadow(thingName=box_id, payload=json.dumps(payload).encode())
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConflictException":
                raise
    raise ShadowContention(f"the shadow of {box_id} kept changing ({SHADOW_TRIES} tries)")


def holds(command_id: str) -> Callable[[str | None], bool]:
    """`when` for update_desired: only while the shadow holds this command's order."""
    return lambda current: current == command_id


def order(command_id: str, expires_at: int) -> dict[str, Any]:
    """The order as the box reads it from `desired`."""
    return {"power": "off", "command_id": command_id, "expires_at": expires_at}
