"""Local EventBridge: the stack's schedules invoke their functions at their rate.

Schedules come from the translated template: `AWS::Events::Rule` with a `ScheduleExpression`
(what SAM makes of `Schedule` events) and `AWS::Scheduler::Schedule` (`ScheduleV2`), each target a
function of the stack. `rate(N unit)` is supported; `cron(...)` fails loudly at start. A time scale
> 1 runs every schedule that many times faster (the demo plays a day in minutes).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from boxwatch_infra.aws.events import rate_seconds, scheduled_event
from boxwatch_infra.localcloud.functions import FunctionHost, Trigger
from boxwatch_infra.localcloud.stack import Deployment

log = logging.getLogger("boxwatch.localcloud.scheduler")


@dataclass
class Schedule:
    name: str  # logical id
    expression: str
    period_s: float  # real seconds between runs (scaled)
    function: str
    event_input: Any
    arn: str
    runs: int = 0
    next_at: float = 0.0


class Scheduler:
    def __init__(self, deployment: Deployment, host: FunctionHost, time_scale: float = 1.0):
        self.deployment = deployment
        self.host = host
        self.time_scale = time_scale
        self.schedules: list[Schedule] = []
        resolver = deployment.resolver()
        for logical, res in deployment.resources_of_type("AWS::Events::Rule").items():
            props = resolver.resolve(res["Properties"])
            if "ScheduleExpression" not in props or props.get("State", "ENABLED") == "DISABLED":
                continue
            for target in props.get("Targets", []):
                self._add(logical, props["ScheduleExpression"], target["Arn"], target.get("Input"),
                          f"arn:aws:events:{resolver.region}:{resolver.account_id}:rule/{deployment.physical[logical]}")
        for logical, res in deployment.resources_of_type("AWS::Scheduler::Schedule").items():
            props = resolver.resolve(res["Properties"])
            if props.get("State", "ENABLED") == "DISABLED":
                continue
            target = props["Target"]
            self._add(logical, props["ScheduleExpression"], target["Arn"], target.get("Input"),
                      f"arn:aws:scheduler:{resolver.region}:{resolver.account_id}:schedule/default/{logical}")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _add(self, logical: str, expression: str, target_arn: str, raw_input: Any, arn: str) -> None:
        function = self.host.logical_of(target_arn)
        event_input = json.loads(raw_input) if isinstance(raw_input, str) else raw_input
        period = rate_seconds(expression) / self.time_scale
        self.schedules.append(Schedule(logical, expression, period, function, event_input, arn))

    def event(self, s: Schedule) -> Any:
        if s.event_input is not None:
            return s.event_input
        return scheduled_event(int(time.time() * 1000), self.deployment.template.account_id,
                               self.deployment.template.region, str(uuid.uuid4()), [s.arn])

    def run_now(self, name: str) -> dict[str, list[str]]:
        ran = []
        for s in self.schedules:
            if name in (s.name, s.function):
                self._fire(s)
                ran.append(s.name)
        return {"ran": ran}

    def _fire(self, s: Schedule) -> None:
        s.runs += 1
        self.host.invoke_async(s.function, self.event(s), Trigger(f"schedule:{s.name}", int(time.time() * 1000),
                                                                  s.expression))

    def start(self) -> Scheduler:
        now = time.monotonic()
        for s in self.schedules:
            s.next_at = now + s.period_s  # EventBridge runs a new rate schedule one period after creation
            log.info("schedule %s: %s -> %s every %.1f s", s.name, s.expression, s.function, s.period_s)
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            now = time.monotonic()
            for s in self.schedules:
                if now >= s.next_at:
                    s.next_at += s.period_s
                    self._fire(s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(2)

    def describe(self) -> list[dict[str, Any]]:
        return [{"schedule": s.name, "expression": s.expression, "function": s.function,
                 "every_s": round(s.period_s, 2), "runs": s.runs} for s in self.schedules]
