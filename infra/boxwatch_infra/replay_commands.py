"""Replay event types for remote power-off (issue 4).

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
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from weakref import WeakKeyDictionary

from boxwatch.models import CommandItem, CommandKeyItem
from boxwatch_infra.replay import FINISH_HOOKS, Replay, ScenarioError, event_type

REQUEST_NS = uuid.UUID("0b6c3f4e-23c1-4f59-9a1e-5a3cbd0a7e42")
API_ID, USER_POOL, APP_CLIENT = "k3x9q2w7ab", "us-east-1_Bx7WaTcH1", "5kq2n8r1m0c4boxwatchapp01"


@dataclass
class _State:
    commands: list[dict[str, Any]] = field(default_factory=list)  # report entries, in event order
    by_key: dict[str, str] = field(default_factory=dict)  # idempotency key -> command id


_STATE: WeakKeyDictionary[Replay, _State] = WeakKeyDictionary()


def _state(replay: Replay) -> _State:
    return _STATE.setdefault(replay, _State())


def http_api_event(method: str, path: str, route: str, client: str, now_ms: int, path_parameters: dict[str, str] | None,
                   headers: dict[str, str] | None = None, body: Any = None, query: dict[str, str] | None = None,
                   ) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event as the JWT authorizer passes it on: the Cognito
    access token's claims, all strings; API Gateway lower-cases header names."""
    request_id = str(uuid.uuid5(REQUEST_NS, f"{client}{method}{path}{now_ms}"))
    when = datetime.fromtimestamp(now_ms / 1000, UTC)
    issued = now_ms // 1000 - 60
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {route}",
        "rawPath": path,
        "rawQueryString": "&".join(f"{k}={v}" for k, v in (query or {}).items()),
        "headers": {"accept": "application/json", "authorization": "Bearer eyJraWQiOi...", "content-length": "0",
                    "host": f"{API_ID}.execute-api.us-east-1.amazonaws.com", "user-agent": "boxwatch-app/1.0",
                    "x-forwarded-for": "198.51.100.7", "x-forwarded-port": "443", "x-forwarded-proto": "https",
                    **(headers or {})},
        "queryStringParameters": query,
        "pathParameters": path_parameters,
        "body": None,
        "requestContext": {
            "accountId": "123456789012", "apiId": API_ID,
            "authorizer": {"jwt": {"claims": {
                "sub": client, "iss": f"https://cognito-idp.us-east-1.amazonaws.com/{USER_POOL}",
                "client_id": APP_CLIENT, "token_use": "access", "scope": "aws.cognito.signin.user.admin",
                "auth_time": str(issued), "iat": str(issued), "exp": str(issued + 3600),
                "jti": str(uuid.uuid5(REQUEST_NS, f"jti{client}{issued}")), "username": client,
            }, "scopes": None}},
            "domainName": f"{API_ID}.execute-api.us-east-1.amazonaws.com", "domainPrefix": API_ID,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "198.51.100.7",
                     "userAgent": "boxwatch-app/1.0"},
            "requestId": request_id, "routeKey": f"{method} {route}", "stage": "$default",
            "time": when.strftime("%d/%b/%Y:%H:%M:%S +0000"), "timeEpoch": now_ms,
        },
        "isBase64Encoded": False,
    }
    # API Gateway leaves out what the request did not have
    for name, value in (("pathParameters", path_parameters), ("queryStringParameters", query),
                        ("body", None if body is None else json.dumps(body))):
        if value is None:
            del event[name]
        else:
            event[name] = value
    return event


@event_type("power_off")
def _power_off(replay: Replay, event: dict[str, Any]) -> None:
    client, box, key = event.get("client"), event.get("box"), event.get("key")
    if not all(isinstance(v, str) and v for v in (client, box, key)):
        raise ScenarioError("power_off needs client, box and key")
    assert isinstance(client, str) and isinstance(box, str) and isinstance(key, str)
    api_event = http_api_event("POST", f"/boxes/{box}/power-off", "/boxes/{box_id}/power-off", client,
                               replay.now_ms, {"box_id": box}, headers={"idempotency-key": key})
    response = replay.sb.invoke("CommandApi", api_event)
    status = int(response["statusCode"])
    body = json.loads(response.get("body") or "{}")
    entry = {"t": replay.t, "client": client, "box": box, "key": key, "command_id": body.get("command_id"),
             "status": "refused" if status >= 400 else body.get("status"), "http_status": status}
    if status >= 400:
        replay.reject(event, str(body.get("error", status)), str(body.get("message", "")), http_status=status)
    elif body.get("command_id"):
        _state(replay).by_key[key] = body["command_id"]
    _state(replay).commands.append(entry)


REPORTS = {
    "off": {"power": "off", "contactor": "open", "command_status": "done"},
    "failed": {"power": "on", "contactor": "closed", "command_status": "failed", "reason": "contactor did not open"},
    "refused": {"command_status": "refused", "reason": "expired"},
}


@event_type("power_state")
def _power_state(replay: Replay, event: dict[str, Any]) -> None:
    box, state, key = event.get("box"), event.get("state"), event.get("key")
    if not isinstance(box, str) or not box or not isinstance(state, str):
        raise ScenarioError("power_state needs box and state")
    if key is not None:
        if state not in REPORTS:
            raise ScenarioError(f"power_state with a key takes state off|failed|refused, got {state!r}")
        command_id = _state(replay).by_key.get(str(key))
        if command_id is None:
            raise ScenarioError(f"no power_off created a command with key {key!r}")
        reported: dict[str, Any] = {**REPORTS[state], "command_id": command_id, "at": replay.now_ms}
        if "reason" in event:
            reported["reason"] = str(event["reason"])
    else:
        if state not in ("on", "off"):
            raise ScenarioError(f"plain power_state takes state on|off, got {state!r}")
        reported = {"power": state, "contactor": "open" if state == "off" else "closed", "at": replay.now_ms}
    concurrent = event.get("concurrent_updates", 0)
    if isinstance(concurrent, bool) or not isinstance(concurrent, int) or concurrent < 0:
        raise ScenarioError(f"concurrent_updates must be a non-negative integer, got {concurrent!r}")
    if not concurrent:
        replay.sb.device_shadow_update(box, {"state": {"reported": reported}})
        return
    sb = replay.sb
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


@event_type("ttl_expired")
def _ttl_expired(replay: Replay, event: dict[str, Any]) -> None:
    client, key = event.get("client"), event.get("key")
    if not all(isinstance(v, str) and v for v in (client, key)):
        raise ScenarioError("ttl_expired needs client and key")
    assert isinstance(client, str) and isinstance(key, str)
    try:
        CommandKeyItem.get(*CommandKeyItem.key(client, key)).delete()
    except CommandKeyItem.DoesNotExist:
        raise ScenarioError(f"no reservation of key {key!r} for {client!r}") from None


def _report(replay: Replay) -> None:
    state = _state(replay)
    for entry in state.commands:
        if entry["command_id"] and entry["status"] != "refused":
            try:
                entry["status"] = CommandItem.get(*CommandItem.key(entry["command_id"]), consistent_read=True).status
            except CommandItem.DoesNotExist:
                entry["status"] = "pending"
    replay.extra["commands"] = state.commands
    replay.extra["shadows"] = {box: {"state": doc.get("state", {}), "version": doc.get("version")}
                               for box, doc in sorted(replay.sb.shadows().items())}


FINISH_HOOKS.append(_report)
