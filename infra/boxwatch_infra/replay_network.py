"""Replay event types for network status: AWS IoT lifecycle events.

`{type: connected, box}` and `{type: disconnected, box, reason}` become the JSON documents AWS IoT
Core publishes on `$aws/events/presence/<type>/<box>`, run through the template's rules. Each box
gets an increasing `versionNumber` (an explicit `version` sets it, to test reordering; later
automatic numbers continue above the highest seen); `at` sets the event's own timestamp when it
differs from its arrival `t` (a late event). See docs/network-status.md.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from boxwatch.models import BoxItem, IncidentItem, IncidentMemberItem
from boxwatch.network import CLIENT_INITIATED
from boxwatch_infra.replay import FINISH_HOOKS, SETUP_HOOKS, Replay, ScenarioError, event_type

NETWORK_TYPES = ("connected", "disconnected")
DEFAULT_REASON = "MQTT_KEEP_ALIVE_TIMEOUT"
SESSION_NS = uuid.UUID("6f1c2a52-8f4e-4d55-9a55-0b8f3f7e2c11")  # deterministic session ids


@dataclass
class _BoxLog:
    version: int = 0  # highest versionNumber used so far
    session: int = 0  # connections so far (sessionIdentifier)


@dataclass
class _State:
    boxes: dict[str, _BoxLog] = field(default_factory=dict)

    def box(self, box_id: str) -> _BoxLog:
        return self.boxes.setdefault(box_id, _BoxLog())


_STATE: WeakKeyDictionary[Replay, _State] = WeakKeyDictionary()


def _state(replay: Replay) -> _State:
    return _STATE.setdefault(replay, _State())


def lifecycle_event(box: str, kind: str, timestamp: int, version: int, session: int,
                    reason: str | None = None) -> dict[str, Any]:
    """A lifecycle event as AWS IoT Core documents it (life-cycle-events.html)."""
    doc: dict[str, Any] = {
        "clientId": box,
        "timestamp": timestamp,
        "eventType": kind,
        "sessionIdentifier": str(uuid.uuid5(SESSION_NS, f"{box}#{session}")),
        "principalIdentifier": hashlib.sha256(box.encode()).hexdigest(),  # the box's certificate id
        "versionNumber": version,
    }
    if kind == "connected":
        doc["ipAddress"] = "192.0.2.10"
    else:
        doc["clientInitiatedDisconnect"] = reason == CLIENT_INITIATED
        doc["disconnectReason"] = reason
    return doc


def publish_lifecycle(replay: Replay, event: dict[str, Any], box: str, kind: str, timestamp: int,
                      version: int | None = None, reason: str | None = None) -> None:
    log = _state(replay).box(box)
    if version is None:
        version = log.version + 1
    log.version = max(log.version, version)
    if kind == "connected":
        log.session += 1
    doc = lifecycle_event(box, kind, timestamp, version, max(log.session, 1), reason)
    # AWS itself publishes lifecycle events: no MQTT client id
    for d in replay.sb.publish_mqtt(f"$aws/events/presence/{kind}/{box}", doc, "", replay.now_ms):
        if d.error:
            replay.reject(event, "malformed", d.error)
        else:
            replay.check(event, d.result)


def _lifecycle(replay: Replay, event: dict[str, Any], kind: str) -> None:
    box = event.get("box")
    if not isinstance(box, str) or not box:
        raise ScenarioError(f"{kind} event needs a box")
    version = event.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
        raise ScenarioError(f"version must be a non-negative integer, got {version!r}")
    at = replay.start_ms + round(float(event.get("at", event.get("t", 0))) * 1000)
    reason = str(event.get("reason", DEFAULT_REASON)) if kind == "disconnected" else None
    publish_lifecycle(replay, event, box, kind, at, version, reason)


@event_type("connected")
def _connected(replay: Replay, event: dict[str, Any]) -> None:
    """The box (re)connects to AWS IoT Core."""
    _lifecycle(replay, event, "connected")


@event_type("disconnected")
def _disconnected(replay: Replay, event: dict[str, Any]) -> None:
    """The box's connection ends; `reason` is AWS's disconnectReason (default MQTT_KEEP_ALIVE_TIMEOUT)."""
    _lifecycle(replay, event, "disconnected")


@event_type("scheduled")
def _scheduled(replay: Replay, event: dict[str, Any]) -> None:
    """An extra delivery of every schedule at `t` (EventBridge delivers at least once)."""
    for function, _ in replay.schedules():
        replay.check(event, replay.scheduled(function))


def _setup(replay: Replay) -> None:
    """Every box starts online: a connected event at t=0 with versionNumber 1.

    Boxes that no lifecycle event of the scenario mentions are left as registered (online): a t=0
    event would change nothing they can show, and it would cost one invocation per box, which a
    50,000-box fleet scenario cannot afford. `online: false` boxes never connected: they are marked
    offline in set-up, outside the offline index (they are no news for the sweep).
    """
    mentioned = {e.get("box") for e in replay.scenario.events if e.get("type") in NETWORK_TYPES}
    replay.sb.now_ms = replay.start_ms
    for raw in replay.scenario.boxes:
        box = str(raw["id"])
        if raw.get("online", True) is False:
            BoxItem(box).update(actions=[BoxItem.online.set(False), BoxItem.status_since.set(replay.start_ms),
                                         BoxItem.status_reason.set("NEVER_CONNECTED")])
        elif box in mentioned:
            publish_lifecycle(replay, {"t": 0, "type": "connected", "box": box}, box, "connected", replay.start_ms, 1)
    # set-up is not what the handlers cost during the scenario
    replay.sb.counter.reset()


def _report(replay: Replay) -> None:
    """`network` report section: final status of the boxes lifecycle events touched, and incidents."""
    def secs(ms: Any) -> float | None:
        return None if ms is None else (int(ms) - replay.start_ms) / 1000

    touched = sorted({str(e["box"]) for e in replay.scenario.events if e.get("type") in NETWORK_TYPES and e.get("box")}
                     | {str(b["id"]) for b in replay.scenario.boxes if b.get("online", True) is False})
    boxes = {b.box_id: b for b in BoxItem.batch_get(touched)} if touched else {}
    incidents = [i for i in IncidentItem.scan(IncidentItem.sk == "META")]
    members: dict[str, dict[str, int]] = {
        i.incident_id: {m.box_id: int(m.seq) for m in IncidentMemberItem.rows(i.pk)} for i in incidents}
    if not touched and not incidents:
        return
    replay.extra["network"] = {
        "boxes": {
            b: {"online": bool(boxes[b].online), "since": secs(boxes[b].status_since), "reason": boxes[b].status_reason,
                "version": int(boxes[b].presence_version)}
            for b in touched if b in boxes
        },
        "incidents": [
            {"id": i.incident_id, "state": i.state, "members": sorted(members[i.incident_id]),
             "announced": sorted(b for b, q in members[i.incident_id].items() if q <= int(i.announced_upto)),
             "opened_at": secs(i.opened_at), "resolved_at": secs(i.resolved_at), "merged_into": i.merged_into,
             "blip": bool(i.blip)}
            for i in sorted(incidents, key=lambda i: i.incident_id)
        ],
    }


SETUP_HOOKS.append(_setup)
FINISH_HOOKS.append(_report)
