"""Replay event types for remote power-off.

`{type: power_off, client, box, key}` is an HTTP API v2 call to CommandApi as that client (JWT
`sub` = client id, `Idempotency-Key: key`), at the virtual time. `{type: power_state, box, state,
key}` is the box reporting its shadow: with `key`, the report settles the command that the
power_off with that key created (`state: off` = done with the contactor open; `failed` / `refused`
= that outcome, `reason` optional); without `key`, a plain power/contactor report;
`concurrent_updates: N` makes the box change its shadow N more times while the handlers settle the
report (each right after a handler read the shadow: contention). `{type: ttl_expired, client, key}`
is DynamoDB's TTL deleting the reservation of that client's idempotency key. The report gains
`commands` (one entry per power_off) and `shadows` (every box's final shadow). docs/power-off.md
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from boxwatch.models import CommandItem, CommandKeyItem
from boxwatch_infra.aws.events import http_api_event
from boxwatch_infra.replay.run import Plugin, Run
from boxwatch_infra.replay.scenario import ScenarioError

REPORTS = {
    "off": {"power": "off", "contactor": "open", "command_status": "done"},
    "failed": {"power": "on", "contactor": "closed", "command_status": "failed", "reason": "contactor did not open"},
    "refused": {"command_status": "refused", "reason": "expired"},
}



class Commands(Plugin):
    EVENTS: ClassVar[dict[str, str]] = {"power_off": "power_off", "power_state": "power_state",
                                        "ttl_expired": "ttl_expired"}

    def __init__(self, run: Run) -> None:
        super().__init__(run)
        self.commands: list[dict[str, Any]] = []  # report entries, in event order
        self.by_key: dict[str, str] = {}  # idempotency key -> command id

    def power_off(self, event: dict[str, Any]) -> None:
        run = self.run
        client, box, key = event.get("client"), event.get("box"), event.get("key")
        if not all(isinstance(v, str) and v for v in (client, box, key)):
            raise ScenarioError("power_off needs client, box and key")
        assert isinstance(client, str) and isinstance(box, str) and isinstance(key, str)
        api_event = http_api_event("POST", f"/boxes/{box}/power-off", "/boxes/{box_id}/power-off", client,
                                   run.now_ms, {"box_id": box}, headers={"idempotency-key": key})
        response = run.sb.invoke("CommandApi", api_event)
        status = int(response["statusCode"])
        body = json.loads(response.get("body") or "{}")
        entry = {"t": run.t, "client": client, "box": box, "key": key, "command_id": body.get("command_id"),
                 "status": "refused" if status >= 400 else body.get("status"), "http_status": status}
        if status >= 400:
            run.reject(event, str(body.get("error", status)), str(body.get("message", "")), http_status=status)
        elif body.get("command_id"):
            self.by_key[key] = body["command_id"]
        self.commands.append(entry)

    def power_state(self, event: dict[str, Any]) -> None:
        run = self.run
        box, state, key = event.get("box"), event.get("state"), event.get("key")
        if not isinstance(box, str) or not box or not isinstance(state, str):
            raise ScenarioError("power_state needs box and state")
        if key is not None:
            if state not in REPORTS:
                raise ScenarioError(f"power_state with a key takes state off|failed|refused, got {state!r}")
            command_id = self.by_key.get(str(key))
            if command_id is None:
                raise ScenarioError(f"no power_off created a command with key {key!r}")
            reported: dict[str, Any] = {**REPORTS[state], "command_id": command_id, "at": run.now_ms}
            if "reason" in event:
                reported["reason"] = str(event["reason"])
        else:
            if state not in ("on", "off"):
                raise ScenarioError(f"plain power_state takes state on|off, got {state!r}")
            reported = {"power": state, "contactor": "open" if state == "off" else "closed", "at": run.now_ms}
        concurrent = event.get("concurrent_updates", 0)
        if isinstance(concurrent, bool) or not isinstance(concurrent, int) or concurrent < 0:
            raise ScenarioError(f"concurrent_updates must be a non-negative integer, got {concurrent!r}")
        if not concurrent:
            run.sb.device_shadow_update(box, {"state": {"reported": reported}})
            return
        sb = run.sb
        left = [concurrent]

        def box_changes_meanwhile(service: str, operation: str, params: dict[str, Any], call: Any) -> Any:
            # after a handler read the shadow, the box publishes another change before the handler writes
            result = call()
            if (service, operation) == ("iot-data", "GetThingShadow") and sb.counter.function and left[0] > 0 \
                    and params.get("thingName") == box:
                left[0] -= 1
                active, function = sb.counter.active, sb.counter.function
                sb.counter.active, sb.counter.function = False, None  # the box's own update, not the handler's
                try:
                    sb.client("iot-data").update_thing_shadow(thingName=box, payload=json.dumps(
                        {"state": {"reported": {"rssi": -60 - left[0]}}}).encode())
                finally:
                    sb.counter.active, sb.counter.function = active, function
            return result

        sb.counter.interceptors.insert(0, box_changes_meanwhile)
        try:
            sb.device_shadow_update(box, {"state": {"reported": reported}})
        finally:
            sb.counter.interceptors.remove(box_changes_meanwhile)

    def ttl_expired(self, event: dict[str, Any]) -> None:
        client, key = event.get("client"), event.get("key")
        if not all(isinstance(v, str) and v for v in (client, key)):
            raise ScenarioError("ttl_expired needs client and key")
        assert isinstance(client, str) and isinstance(key, str)
        try:
            CommandKeyItem.get(*CommandKeyItem.key(client, key)).delete()
        except CommandKeyItem.DoesNotExist:
            raise ScenarioError(f"no reservation of key {key!r} for {client!r}") from None

    def finish(self) -> None:
        for entry in self.commands:
            if entry["command_id"] and entry["status"] != "refused":
                try:
                    entry["status"] = CommandItem.get(*CommandItem.key(entry["command_id"]),
                                                      consistent_read=True).status
                except CommandItem.DoesNotExist:
                    entry["status"] = "pending"
        self.run.extra["commands"] = self.commands
        self.run.extra["shadows"] = {box: {"state": doc.get("state", {}), "version": doc.get("version")}
                                     for box, doc in sorted(self.run.sb.shadows().items())}
