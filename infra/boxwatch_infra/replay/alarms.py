"""Replay event type `alarm`: a box publishes an alarm log on its topic, as its own MQTT client.

`{type: alarm, box, cause, value, threshold, seq, ...}`; `alarm_at` delivers it late (an outbox
backlog: alarm time != arrival), `raw` sends bytes that are not our JSON, `extra` adds fields,
`client_id` publishes as another MQTT client (a box speaking for another).
"""

from __future__ import annotations

from typing import Any, ClassVar

from boxwatch_infra.replay.run import Plugin
from boxwatch_infra.replay.scenario import ScenarioError

ALARM_FIELDS = ("seq", "cause", "value", "threshold", "unit", "circuit", "phase")


class Alarms(Plugin):
    EVENTS: ClassVar[dict[str, str]] = {"alarm": "alarm"}

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
