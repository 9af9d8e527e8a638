"""Replay event types for network status: AWS IoT lifecycle events, and extra schedule runs.

`{type: connected, box}` and `{type: disconnected, box, reason}` become the JSON documents AWS IoT
Core publishes on `$aws/events/presence/<type>/<box>`, run through the template's rules. Each box
gets an increasing `versionNumber` (an explicit `version` sets it, to test reordering; later
automatic numbers continue above the highest seen); `at` sets the event's own timestamp when it
differs from its arrival `t` (a late event). `{type: scheduled}` is an extra delivery of every
schedule (EventBridge delivers at least once). See docs/network-status.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from boxwatch.models import BoxItem, IncidentItem, IncidentMemberItem
from boxwatch_infra.aws.events import lifecycle_event, lifecycle_topic
from boxwatch_infra.replay.run import Plugin, Run
from boxwatch_infra.replay.scenario import ScenarioError

NETWORK_TYPES = ("connected", "disconnected")
DEFAULT_REASON = "MQTT_KEEP_ALIVE_TIMEOUT"


@dataclass
class _BoxLog:
    version: int = 0  # highest versionNumber used so far
    session: int = 0  # connections so far (sessionIdentifier)


class Network(Plugin):
    EVENTS: ClassVar[dict[str, str]] = {"connected": "connected", "disconnected": "disconnected",
                                        "scheduled": "scheduled"}

    def __init__(self, run: Run) -> None:
        super().__init__(run)
        self.boxes: dict[str, _BoxLog] = {}

    def publish_lifecycle(self, event: dict[str, Any], box: str, kind: str, timestamp: int,
                          version: int | None = None, reason: str | None = None) -> None:
        log = self.boxes.setdefault(box, _BoxLog())
        if version is None:
            version = log.version + 1
        log.version = max(log.version, version)
        if kind == "connected":
            log.session += 1
        doc = lifecycle_event(box, kind, timestamp, version, max(log.session, 1), reason)
        self.run.publish(event, lifecycle_topic(kind, box), doc, "")  # AWS itself publishes them: no client id

    def _lifecycle(self, event: dict[str, Any], kind: str) -> None:
        box = event.get("box")
        if not isinstance(box, str) or not box:
            raise ScenarioError(f"{kind} event needs a box")
        version = event.get("version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
            raise ScenarioError(f"version must be a non-negative integer, got {version!r}")
        at = self.run.start_ms + round(float(event.get("at", event.get("t", 0))) * 1000)
        reason = str(event.get("reason", DEFAULT_REASON)) if kind == "disconnected" else None
        self.publish_lifecycle(event, box, kind, at, version, reason)

    def connected(self, event: dict[str, Any]) -> None:
        """The box (re)connects to AWS IoT Core."""
        self._lifecycle(event, "connected")

    def disconnected(self, event: dict[str, Any]) -> None:
        """The box's connection ends; `reason` is AWS's disconnectReason (default MQTT_KEEP_ALIVE_TIMEOUT)."""
        self._lifecycle(event, "disconnected")

    def scheduled(self, event: dict[str, Any]) -> None:
        """An extra delivery of every schedule at `t` (EventBridge delivers at least once)."""
        for function, _ in self.run.schedules():
            self.run.check(event, self.run.scheduled(function))

    def setup(self) -> None:
        """Every box starts online: a connected event at t=0 with versionNumber 1.

        Boxes that no lifecycle event of the scenario mentions are left as registered (online): a t=0
        event would change nothing they can show, and it would cost one invocation per box, which a
        50,000-box fleet scenario cannot afford. `online: false` boxes never connected: they are marked
        offline in set-up, outside the offline index (they are no news for the sweep).
        """
        run = self.run
        mentioned = {e.get("box") for e in run.scenario.events if e.get("type") in NETWORK_TYPES}
        run.sb.now_ms = run.start_ms
        for raw in run.scenario.boxes:
            box = str(raw["id"])
            if raw.get("online", True) is False:
                BoxItem(box).update(actions=[BoxItem.online.set(False), BoxItem.status_since.set(run.start_ms),
                                             BoxItem.status_reason.set("NEVER_CONNECTED")])
            elif box in mentioned:
                self.publish_lifecycle({"t": 0, "type": "connected", "box": box}, box, "connected", run.start_ms, 1)
        # set-up is not what the handlers cost during the scenario
        run.sb.counter.reset()

    def finish(self) -> None:
        """`network` report section: final status of the boxes lifecycle events touched, and incidents."""
        run = self.run

        def secs(ms: Any) -> float | None:
            return None if ms is None else (int(ms) - run.start_ms) / 1000

        touched = sorted({str(e["box"]) for e in run.scenario.events if e.get("type") in NETWORK_TYPES and e.get("box")}
                         | {str(b["id"]) for b in run.scenario.boxes if b.get("online", True) is False})
        boxes = {b.box_id: b for b in BoxItem.batch_get(touched)} if touched else {}
        incidents = [i for i in IncidentItem.scan(IncidentItem.sk == "META")]
        members: dict[str, dict[str, int]] = {
            i.incident_id: {m.box_id: int(m.seq) for m in IncidentMemberItem.rows(i.pk)} for i in incidents}
        if not touched and not incidents:
            return
        run.extra["network"] = {
            "boxes": {
                b: {"online": bool(boxes[b].online), "since": secs(boxes[b].status_since),
                    "reason": boxes[b].status_reason, "version": int(boxes[b].presence_version)}
                for b in touched if b in boxes
            },
            "incidents": [
                {"id": i.incident_id, "state": i.state, "members": sorted(members[i.incident_id]),
                 "announced": sorted(b for b, q in members[i.incident_id].items() if q <= int(i.announced_upto)),
                 "opened_at": secs(i.opened_at), "resolved_at": secs(i.resolved_at), "merged_into": i.merged_into,
                 "blip": bool(i.blip)} | ({"storm": True, "storm_at": secs(i.storm_at)} if i.storm else {})
                for i in sorted(incidents, key=lambda i: i.incident_id)
            ],
        }
