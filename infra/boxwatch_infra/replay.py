"""`boxwatch replay`: a scenario run through the real handlers, in virtual event time, on moto.

The scenario's events become what AWS would deliver (MQTT messages through the template's IoT
rules, lifecycle events, scheduled events, API calls); the report lists what the handlers
actually published to SNS, what was rejected, and the AWS calls they made. Replay decides
nothing itself: every notification in the report was read back from moto's SNS.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from boxwatch.registry import BindingSpec, BoxSpec, bind, import_boxes
from boxwatch_infra import delivery
from boxwatch_infra.sandbox import Sandbox, decode_push

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)

# data fields of a push that the report carries besides t/client/box/kind/cause/boxes
REPORT_FIELDS = ("offline_boxes", "status", "command_id", "alarm_seq", "seq", "count")
# epoch-ms data fields reported in scenario seconds, like `t`
REPORT_TIMES = ("window_start", "window_end")


class ClientSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    boxes: list[str]
    locale: str = "zh-CN"


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")
    settings: dict[str, Any] = Field(default_factory=dict)
    start: datetime = DEFAULT_START
    boxes: list[dict[str, Any]] = Field(default_factory=list)
    clients: list[ClientSpec] = Field(default_factory=list)
    events: list[dict[str, Any]] = Field(default_factory=list)
    faults: list[dict[str, Any]] = Field(default_factory=list)  # replay_faults.py

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        return cls.model_validate(yaml.safe_load(Path(path).read_text()) or {})


def setting_to_parameter(name: str) -> str:
    """neighbour_radius_m -> NeighbourRadiusM (the template parameter of a setting)."""
    return "".join(part.capitalize() for part in name.split("_"))


class ScenarioError(ValueError):
    """An event replay cannot even turn into an AWS message."""


EventHandler = Callable[["Replay", dict[str, Any]], None]
EVENT_TYPES: dict[str, EventHandler] = {}


def event_type(name: str) -> Callable[[EventHandler], EventHandler]:
    def register(fn: EventHandler) -> EventHandler:
        EVENT_TYPES[name] = fn
        return fn

    return register


def _rate_seconds(expr: str) -> int:
    m = re.fullmatch(r"rate\((\d+)\s+(second|minute|hour|day)s?\)", expr.strip())
    if not m:
        raise ScenarioError(f"replay runs rate() schedules only, got {expr!r}")
    return int(m.group(1)) * {"second": 1, "minute": 60, "hour": 3600, "day": 86400}[m.group(2)]


class Replay:
    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        self.parameters = {setting_to_parameter(k): v for k, v in scenario.settings.items()}
        if "sweep_interval_s" in scenario.settings and "sweep_schedule" not in scenario.settings:
            # the schedule follows the interval; rate() in seconds is below EventBridge's minute but fine here
            self.parameters["SweepSchedule"] = f"rate({int(scenario.settings['sweep_interval_s'])} seconds)"
        self.start_ms = int(scenario.start.timestamp() * 1000)
        self.t = 0.0
        self.notifications: list[dict[str, Any]] = []
        self.rejected: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}  # report sections added by event types (commands, shadows...)
        self._seen: dict[str, int] = {}
        self.endpoint_client: dict[str, str] = {}
        # True: rule and schedule deliveries are Lambda's asynchronous invokes with retries (faults set it)
        self.async_invokes = False

    # ---------------------------------------------------------------- time
    @property
    def now_ms(self) -> int:
        return self.start_ms + round(self.t * 1000)

    def iso(self, epoch_ms: int | None = None) -> str:
        ms = self.now_ms if epoch_ms is None else epoch_ms
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    # ---------------------------------------------------------------- setup
    def setup(self, sb: Sandbox) -> None:
        for _ in import_boxes((BoxSpec.model_validate(raw) for raw in self.scenario.boxes), sb.settings):
            pass
        sb.create_things([str(raw["id"]) for raw in self.scenario.boxes])  # every box is an IoT thing
        endpoints = sb.create_push_endpoints([c.id for c in self.scenario.clients])
        self.endpoint_client = {arn: cid for cid, arn in endpoints.items()}
        for client in self.scenario.clients:
            for box in client.boxes:
                bind(BindingSpec(client_id=client.id, box_id=box, target=endpoints[client.id],
                                 locale=client.locale))  # type: ignore[arg-type]
        for hook in SETUP_HOOKS:
            hook(self)

    def schedules(self) -> list[tuple[str, int]]:
        """(function, period s) for every Schedule event of the template."""
        out = []
        for logical, fn in self.sb.template.functions.items():
            for props in fn.events_of_type("Schedule").values():
                out.append((logical, _rate_seconds(str(self.sb.template.resolve(props["Schedule"])))))
        return out

    def settle_s(self) -> float:
        """After the last event, how long virtual time runs on so that late consequences appear."""
        periods = [p for _, p in self.schedules()]
        if not periods:
            return 0.0
        s = self.sb.settings
        return max(s.offline_watch_s, s.outage_max_gap_s, s.command_expiry_s, s.alarm_repeat_hold_s) + 2 * max(periods)

    # ---------------------------------------------------------------- run
    def run(self, sandbox: Sandbox | None = None) -> dict[str, Any]:
        """Run the scenario in a new sandbox, or in `sandbox` (already entered, built with this
        scenario's parameters and emptied by the caller: a test running many scenarios)."""
        for hook in INIT_HOOKS:
            hook(self)
        if sandbox is not None and sandbox.parameter_overrides != self.parameters:
            raise ValueError("the sandbox was built with other parameters than this scenario's")
        with contextlib.nullcontext(sandbox) if sandbox is not None else Sandbox(
                parameter_overrides=self.parameters) as sb:
            self.sb = sb
            sb.async_invokes = self.async_invokes
            self.setup(sb)
            events = sorted(enumerate(self.scenario.events), key=lambda ie: (float(ie[1].get("t", 0)), ie[0]))
            last = max((float(e.get("t", 0)) for _, e in events), default=0.0)
            end = last + self.settle_s()
            ticks = sorted(
                (float(k * period), fn) for fn, period in self.schedules() for k in range(1, int(end // period) + 1)
            )
            timeline: list[tuple[float, int, Any]] = [(float(e.get("t", 0)), 0, e) for _, e in events]
            timeline += [(t, 1, fn) for t, fn in ticks]  # at equal t, events before the schedule
            timeline.sort(key=lambda x: (x[0], x[1]))
            for t, kind, item in timeline:
                self.t = t
                sb.now_ms = self.now_ms
                if kind == 0:
                    self._event(item)
                else:
                    self.scheduled(item)
                self.collect()
            self.t = end
            for hook in FINISH_HOOKS:
                hook(self)
            return {
                "notifications": self.notifications,
                "rejected": self.rejected,
                "aws_calls": dict(sorted(sb.counter.calls.items())),
                "aws_calls_by_function": {
                    fn: dict(sorted(c.items())) for fn, c in sorted(sb.counter.by_function.items())
                },
                **self.extra,
            }

    def _event(self, event: dict[str, Any]) -> None:
        handler = EVENT_TYPES.get(str(event.get("type")))
        try:
            if handler is None:
                raise ScenarioError(f"unknown event type {event.get('type')!r}")
            handler(self, event)
        except ScenarioError as exc:
            self.reject(event, "malformed", str(exc))

    def reject(self, event: dict[str, Any], error: str, message: str, **details: Any) -> None:
        self.rejected.append({"t": self.t, "error": error, "message": message,
                              **{k: event[k] for k in ("type", "box", "seq", "client") if k in event}, **details})

    def check(self, event: dict[str, Any], result: Any) -> Any:
        """Record a handler's refusal in the report."""
        if isinstance(result, dict) and result.get("status") == "rejected":
            details = {k: v for k, v in result.items() if k not in ("status", "error", "message")}
            self.reject(event, str(result.get("error")), str(result.get("message")), **details)
        return result

    def scheduled(self, function: str) -> Any:
        """An EventBridge scheduled event at the current virtual time."""
        event = {
            "version": "0", "id": f"replay-{function}-{self.now_ms}", "detail-type": "Scheduled Event",
            "source": "aws.events", "account": self.sb.template.account_id, "time": self.iso(),
            "region": self.sb.template.region, "detail": {},
            "resources": [f"arn:aws:events:{self.sb.template.region}:{self.sb.template.account_id}:rule/{function}"],
        }
        if self.sb.async_invokes:  # EventBridge invokes asynchronously: Lambda retries a failed run
            result, error = delivery.invoke_async(self.sb, function, event)
            if error:
                self.reject({"type": "scheduled"}, "retries_exhausted", error, function=function)
            return result
        return self.sb.invoke(function, event)

    def collect(self) -> None:
        """Turn what the handlers pushed since the last look into report entries."""
        for arn, messages in self.sb.pushed_messages().items():
            seen = self._seen.get(arn, 0)
            for message in messages[seen:]:
                data = decode_push(message)
                entry = {"t": self.t, "client": self.endpoint_client.get(arn, arn), "box": data.get("box"),
                         "kind": data.get("kind"), "cause": data.get("cause"), "boxes": data.get("boxes", [])}
                entry.update({k: data[k] for k in REPORT_FIELDS if k in data})
                entry.update({k: (int(data[k]) - self.start_ms) / 1000 for k in REPORT_TIMES if k in data})
                self.notifications.append(entry)
            self._seen[arn] = len(messages)


INIT_HOOKS: list[Callable[[Replay], None]] = []  # before the sandbox is built (e.g. async_invokes)
SETUP_HOOKS: list[Callable[[Replay], None]] = []
FINISH_HOOKS: list[Callable[[Replay], None]] = []


# -------------------------------------------------------------------- event types
ALARM_FIELDS = ("seq", "cause", "value", "threshold", "unit", "circuit", "phase")


@event_type("alarm")
def _alarm(replay: Replay, event: dict[str, Any]) -> None:
    """A box publishes an alarm log on its topic (as its own MQTT client)."""
    box = event.get("box")
    if not isinstance(box, str) or not box:
        raise ScenarioError("alarm event needs a box")
    if "raw" in event:
        payload: Any = str(event["raw"])  # a box sending bytes that are not our JSON
    else:
        payload = {"v": 1, **{k: event[k] for k in ALARM_FIELDS if k in event}}
        # alarm_at lets a scenario deliver an alarm late (an outbox backlog): alarm time != arrival
        payload["alarm_time"] = replay.start_ms + round(float(event.get("alarm_at", event["t"])) * 1000)
        payload.update(event.get("extra", {}))
    deliveries = replay.sb.publish_mqtt(f"boxwatch/boxes/{box}/alarms", payload, str(event.get("client_id", box)),
                                        replay.now_ms)
    for d in deliveries:
        if d.error:
            replay.reject(event, "malformed", d.error)
        else:
            replay.check(event, d.result)


def run_file(path: str | Path) -> dict[str, Any]:
    return Replay(Scenario.load(path)).run()


def dumps(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False, sort_keys=False)


# event types of later issues register themselves on import
# last: faults are armed after every other set-up hook (the boxes' first connects never fail)
from boxwatch_infra import (  # noqa: E402,F401
    replay_commands,
    replay_faults,
    replay_network,
)
