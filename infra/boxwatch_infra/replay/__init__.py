"""`boxwatch replay`: a scenario run through the real handlers, in virtual event time, on moto.

The scenario's events become what AWS would deliver (MQTT messages through the template's IoT
rules, lifecycle events, scheduled events, API calls); the report lists what the handlers
actually published to SNS, what was rejected, and the AWS calls they made. Replay decides
nothing itself: every notification in the report was read back from moto's SNS.

| module | what |
|---|---|
| `scenario` | the scenario file (`Scenario`), `ScenarioError` |
| `run` | the engine (`Run`): set-up, timeline, schedules, report; the `Plugin` interface |
| `alarms` | `alarm` events |
| `network` | `connected` / `disconnected` lifecycle events, extra `scheduled` runs; the `network` section |
| `commands` | `power_off`, `power_state`, `ttl_expired`; the `commands` and `shadows` sections |
| `faults` | a scenario's `faults:` injected into the handlers' AWS calls; the `faults` section |
| `deploy` | `redeploy` events: the same stack with other template parameters |
| `devices` | `register` / `unregister` (POST / DELETE /me/devices); the `devices` section |
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from boxwatch_infra.replay.alarms import Alarms
from boxwatch_infra.replay.commands import Commands
from boxwatch_infra.replay.deploy import Deploy
from boxwatch_infra.replay.devices import Devices
from boxwatch_infra.replay.faults import Faults
from boxwatch_infra.replay.network import Network
from boxwatch_infra.replay.run import Plugin, Run
from boxwatch_infra.replay.scenario import ClientSpec, Scenario, ScenarioError
from boxwatch_infra.sandbox import DEFAULT_START

# the plugins of `boxwatch replay`, in the order their hooks run (the report's sections follow it)
PLUGINS: tuple[type[Plugin], ...] = (Alarms, Commands, Faults, Network, Deploy, Devices)


class Replay(Run):
    """A run with every plugin of `boxwatch replay`."""

    def __init__(self, scenario: Scenario, plugins: tuple[type[Plugin], ...] = PLUGINS):
        super().__init__(scenario, plugins)


def run_file(path: str | Path) -> dict[str, Any]:
    return Replay(Scenario.load(path)).run()


def dumps(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False, sort_keys=False)


__all__ = ["DEFAULT_START", "PLUGINS", "ClientSpec", "Plugin", "Replay", "Run", "Scenario", "ScenarioError",
           "dumps", "run_file"]
