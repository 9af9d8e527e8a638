"""Replay event types `alarm`, `clear` and `ack`, and the report's `alarms` section.

`{type: alarm, box, cause, value, threshold, seq, ...}`: a box publishes an alarm log on its topic,
as its own MQTT client; `alarm_at` delivers it late (an outbox backlog: alarm time != arrival),
`raw` sends bytes that are not our JSON, `extra` adds fields, `client_id` publishes as another MQTT
client (a box speaking for another).
`{type: clear, box, cause, seq, value?, threshold?, circuit?}`: the box's clear message (contract v1
`state: cleared`, its own seq). `{type: ack, client, box, cause, disposition, comment?, circuit?}`:
the client's ack API call for the box's current alarm of that cause (the latest, active or not).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from boxwatch_infra.aws.events import http_api_event
from boxwatch_infra.replay.run import Plugin
from boxwatch_infra.replay.scenario import ScenarioError

ALARM_FIELDS = ("seq", "cause", "value", "threshold", "unit", "circuit", "phase")


class Alarms(Plugin):
    EVENTS: ClassVar[dict[str, str]] = {"alarm": "alarm", "clear": "clear", "ack": "ack"}

    def alarm(self, event: dict[str, Any]) -> None:
        run = self.run
        box = event.get("box")
        if not isinstance(box, str) or not box:
            raise ScenarioError("alarm event needs a box")
        if "raw" in event:
            payload: Any = str(event["raw"])  # a box sending bytes that are not our JSON
        else:
            payload = {"v": 1, **{k: event[k] for k in ALARM_FIELDS if k in event}}
            payload["alarm_time"] = run.start_ms + round(float(event.get("alarm_at", event["t"])) * 1000)
            payload.update(event.get("extra", {}))
        run.publish(event, f"boxwatch/boxes/{box}/alarms", payload, str(event.get("client_id", box)))

    def clear(self, event: dict[str, Any]) -> None:
        run = self.run
        box = event.get("box")
        if not isinstance(box, str) or not box:
            raise ScenarioError("clear event needs a box")
        payload: dict[str, Any] = {"v": 1, "state": "cleared", "value": 0.0, "threshold": 0.0,
                                   **{k: event[k] for k in ALARM_FIELDS if k in event}}
        payload["alarm_time"] = run.start_ms + round(float(event.get("alarm_at", event["t"])) * 1000)
        run.publish(event, f"boxwatch/boxes/{box}/alarms", payload, box)

    def _api(self, method: str, path: str, route: str, client: str, params: dict[str, str],
             body: Any = None, query: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        run = self.run
        response = run.sb.invoke("CommandApi", http_api_event(method, path, route, client, run.now_ms, params,
                                                              body=body, query=query))
        return int(response["statusCode"]), json.loads(response.get("body") or "{}")

    def ack(self, event: dict[str, Any]) -> None:
        run = self.run
        client, box, cause = event.get("client"), event.get("box"), event.get("cause")
        if not all(isinstance(v, str) and v for v in (client, box, cause)):
            raise ScenarioError("ack needs client, box and cause")
        assert isinstance(client, str) and isinstance(box, str)
        # the phone first lists the box's alarms (as the app does), then acknowledges that cause's latest
        status, body = self._api("GET", f"/boxes/{box}/alarms", "/boxes/{box_id}/alarms", client, {"box_id": box},
                                 query={"state": "all"})
        if status >= 400:
            run.reject(event, str(body.get("error", status)), str(body.get("message", "")), http_status=status)
            return
        mine = [a for a in body.get("alarms", []) if a["cause"] == cause
                and ("circuit" not in event or a["circuit"] == event["circuit"])]
        if not mine:
            run.reject(event, "not_found", f"{box} has no {cause} alarm to acknowledge", http_status=404)
            return
        alarm_id = max(mine, key=lambda a: (a["first_at"], a["alarm_id"]))["alarm_id"]
        body_in = {"disposition": event.get("disposition"), **({"comment": event["comment"]} if "comment" in event
                                                                 else {})}
        status, body = self._api("POST", f"/boxes/{box}/alarms/{alarm_id}/ack", "/boxes/{box_id}/alarms/{alarm_id}/ack",
                                 client, {"box_id": box, "alarm_id": alarm_id}, body=body_in)
        if status >= 400:
            run.reject(event, str(body.get("error", status)), str(body.get("message", "")), http_status=status)

    def finish(self) -> None:
        """The `alarms` section: one entry per alarm (its life), times in scenario seconds."""
        from boxwatch.models import AlarmLifeItem

        run = self.run
        if not any(e.get("type") in ("alarm", "clear", "ack") for e in run.scenario.events):
            return
        lives = sorted((x for x in AlarmLifeItem.scan() if str(x.sk).startswith("LIFE#")),
                       key=lambda x: (int(x.first_at), x.box_id, x.cause))

        def s(ms: Any) -> float | None:
            return None if ms is None else (int(ms) - run.start_ms) / 1000

        by_id = {(x.box_id, x.alarm_id): x for x in lives}
        for n in run.notifications:  # an SMS names its alarm, not its cause
            life = by_id.get((str(n.get("box")), str(n.get("alarm_id"))))
            if n.get("channel") == "sms" and life is not None:
                n["cause"] = life.cause
        run.extra["alarms"] = [
            {"box": x.box_id, "cause": x.cause, "circuit": x.circuit, "state": x.state, "acked_by": x.acked_by,
             "acked_at": s(x.acked_at), "disposition": x.disposition, "cleared_at": s(x.cleared_at),
             "count": int(x.logs), "escalation_steps": list(x.escalation_steps or []), "first_at": s(x.first_at),
             "last_at": s(x.last_at)}
            for x in lives]
