"""Replay event type `redeploy`: `sam deploy` of the same stack with other parameter values.

`{type: redeploy, settings: {outage_radius_m: 2000}}` keeps every table and item and gives the
functions a new configuration from then on (cold containers, new settings, rules re-read). The
schedules keep the rates the scenario started with, so a redeploy may not change a schedule.
"""

from __future__ import annotations

from typing import Any, ClassVar

from boxwatch_infra.replay.run import Plugin
from boxwatch_infra.replay.scenario import ScenarioError, setting_to_parameter

SCHEDULE_SETTINGS = ("sweep_interval_s", "sweep_schedule")


class Deploy(Plugin):
    EVENTS: ClassVar[dict[str, str]] = {"redeploy": "redeploy"}

    def redeploy(self, event: dict[str, Any]) -> None:
        settings = event.get("settings")
        if not isinstance(settings, dict) or not settings:
            raise ScenarioError("redeploy event needs settings (template parameters in snake_case)")
        if changed := [k for k in settings if k in SCHEDULE_SETTINGS or k.endswith("_schedule")]:
            raise ScenarioError(f"replay keeps the schedules it started with; cannot redeploy {changed}")
        parameters = {setting_to_parameter(k): v for k, v in settings.items()}
        unknown = sorted(set(parameters) - set(self.run.sb.template.doc.get("Parameters", {})))
        if unknown:
            raise ScenarioError(f"not template parameters: {unknown}")
        self.run.sb.redeploy(**parameters)
