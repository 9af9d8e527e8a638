"""The replay engine: a scenario's timeline in virtual event time on a sandbox, with plugins.

The engine sets the sandbox up from the scenario (boxes, things, clients' phones, bindings), runs
the scenario's events and the template's schedules in time order, and after every step reads back
what the handlers pushed. What an event *is* comes from the plugins (`Plugin`): each turns its
event types into AWS messages and may hook the run's start and end. A plugin instance belongs to
one run: whatever it keeps between events is its own state, never a module's. The plugins of
`boxwatch replay` are listed in `boxwatch_infra.replay`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from boxwatch.models import LEASE_MS
from boxwatch.registry import BindingSpec, BoxSpec, bind, import_boxes
from boxwatch_infra.aws.events import UnsupportedSchedule, rate_seconds, scheduled_event
from boxwatch_infra.replay.scenario import Scenario, ScenarioError, setting_to_parameter
from boxwatch_infra.sandbox import Sandbox, decode_push

# data fields of a push that the report carries besides t/client/box/kind/cause/boxes
REPORT_FIELDS = ("offline_boxes", "status", "command_id", "alarm_seq", "seq", "count", "circuit", "acked_by",
                 "disposition", "dark")
# epoch-ms data fields reported in scenario seconds, like `t`
REPORT_TIMES = ("window_start", "window_end", "first_at", "cleared_at")
# the reference an escalation SMS ends with (alarm_life, notify "escalation"): <box>/<alarm id>
SMS_REF = re.compile(r"(?:Ref|编号) (\S+)/(\S+)$")
# and for the storm-mode kinds (only theirs: the other kinds' entries stay as they were)
AREA_FIELDS = ("incident", "offline_count", "boxes_in_area")
AREA_TIMES = ("back_at",)


class Plugin:
    """A part of replay, one instance per run. `EVENTS` maps the event types it handles to the
    names of its methods that handle them (each takes the event); the hooks run in the order the
    plugins are listed."""

    EVENTS: ClassVar[dict[str, str]] = {}

    def __init__(self, run: Run) -> None:
        self.run = run

    def init(self) -> None:
        """Before the sandbox is built (e.g. `run.async_invokes`)."""

    def setup(self) -> None:
        """After the boxes, things, phones and bindings exist, before the first event."""

    def finish(self) -> None:
        """After the last step: report sections go into `run.extra`."""


class Run:
    sb: Sandbox

    def __init__(self, scenario: Scenario, plugins: Sequence[type[Plugin]] = ()):
        self.scenario = scenario
        self.parameters = {setting_to_parameter(k): v for k, v in scenario.settings.items()}
        if "sweep_interval_s" in scenario.settings and "sweep_schedule" not in scenario.settings:
            # the schedule follows the interval; rate() in seconds is below EventBridge's minute but fine here
            self.parameters["SweepSchedule"] = f"rate({int(scenario.settings['sweep_interval_s'])} seconds)"
        self.start_ms = int(scenario.start.timestamp() * 1000)
        self.t = 0.0
        self.notifications: list[dict[str, Any]] = []
        self.rejected: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}  # report sections added by plugins (commands, shadows...)
        self._seen: dict[str, int] = {}
        self._sms_seen = 0
        self.sms_client: dict[str, str] = {}  # E.164 number -> client
        self.endpoint_client: dict[str, str] = {}
        # True: rule and schedule deliveries are Lambda's asynchronous invokes with retries (faults set it)
        self.async_invokes = False
        self.plugins = [cls(self) for cls in plugins]
        self.event_types: dict[str, Callable[[dict[str, Any]], None]] = {}
        for plugin in self.plugins:
            for kind, method in plugin.EVENTS.items():
                if kind in self.event_types:
                    raise ValueError(f"two replay plugins handle {kind!r} events")
                self.event_types[kind] = getattr(plugin, method)

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
        # a client that registers its phone in the scenario has no device until it does; every
        # other client gets one, registered as the phone would (docs/replay.md)
        registering = {str(e.get("client")) for e in self.scenario.events if e.get("type") == "register"}
        endpoints = sb.register_phones({c.id: None for c in self.scenario.clients if c.id not in registering})
        self.endpoint_client = {arn: cid for cid, arn in endpoints.items()}
        for client in self.scenario.clients:
            for box in client.boxes:
                bind(BindingSpec(client_id=client.id, box_id=box, locale=client.locale,  # type: ignore[arg-type]
                                 role=client.role, sms=client.sms))
            if client.sms:
                self.sms_client[client.sms] = client.id
        for plugin in self.plugins:
            plugin.setup()

    def schedules(self) -> list[tuple[str, int]]:
        """(function, period s) for every Schedule event of the template."""
        out = []
        for logical, fn in self.sb.template.functions.items():
            for props in fn.events_of_type("Schedule").values():
                expr = str(self.sb.template.resolve(props["Schedule"]))
                try:
                    out.append((logical, rate_seconds(expr, seconds=True)))
                except UnsupportedSchedule:
                    raise ScenarioError(f"replay runs rate() schedules only, got {expr!r}") from None
        return out

    def settle_s(self) -> float:
        """After the last event, how long virtual time runs on so that late consequences appear."""
        periods = [p for _, p in self.schedules()]
        if not periods:
            return 0.0
        s = self.sb.settings
        settle = max(s.offline_watch_s, s.outage_max_gap_s, s.command_expiry_s, s.alarm_repeat_hold_s) \
            + 2 * max(periods)
        # with faults a sweep may die holding a claim: it is sent once the claim's lease is over
        return settle + (LEASE_MS / 1000 if self.scenario.faults else 0.0)

    # ---------------------------------------------------------------- run
    def run(self, sandbox: Sandbox | None = None) -> dict[str, Any]:
        """Run the scenario in a new sandbox, or in `sandbox` (already entered, built with this
        scenario's parameters and emptied by the caller: a test running many scenarios)."""
        for plugin in self.plugins:
            plugin.init()
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
            for plugin in self.plugins:
                plugin.finish()
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
        handler = self.event_types.get(str(event.get("type")))
        try:
            if handler is None:
                raise ScenarioError(f"unknown event type {event.get('type')!r}")
            handler(event)
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

    def publish(self, event: dict[str, Any], topic: str, payload: Any, client_id: str) -> None:
        """An MQTT message into IoT Core now, through the template's rules; each delivery's error
        or refusal goes into the report."""
        for d in self.sb.publish_mqtt(topic, payload, client_id, self.now_ms):
            if d.error:
                self.reject(event, "malformed", d.error)
            else:
                self.check(event, d.result)

    def scheduled(self, function: str) -> Any:
        """An EventBridge scheduled event at the current virtual time."""
        account, region = self.sb.template.account_id, self.sb.template.region
        event = scheduled_event(self.now_ms, account, region, f"replay-{function}-{self.now_ms}",
                                [f"arn:aws:events:{region}:{account}:rule/{function}"])
        if self.sb.async_invokes:  # EventBridge invokes asynchronously: Lambda retries a failed run
            result, error = self.sb.invoke_async(function, event)
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
                # the endpoint's owner now (a token that moved to another client moved its endpoint)
                client = self.sb.endpoint_owner(arn) or self.endpoint_client.get(arn, arn)
                entry = {"t": self.t, "client": client, "box": data.get("box"),
                         "kind": data.get("kind"), "cause": data.get("cause"), "boxes": data.get("boxes", [])}
                entry.update({k: data[k] for k in REPORT_FIELDS if k in data})
                entry.update({k: (int(data[k]) - self.start_ms) / 1000 for k in REPORT_TIMES if k in data})
                if str(data.get("kind")).startswith("area_"):
                    entry.update({k: data[k] for k in AREA_FIELDS if k in data})
                    entry.update({k: (int(data[k]) - self.start_ms) / 1000 for k in AREA_TIMES if k in data})
                self.notifications.append(entry)
            self._seen[arn] = len(messages)
        sms = self.sb.sent_sms()
        for number, text in sms[self._sms_seen:]:
            # an SMS carries no data: the escalation's reference names the box and the alarm
            ref = SMS_REF.search(text)
            entry = {"t": self.t, "client": self.sms_client.get(number, number), "box": ref.group(1) if ref else None,
                     "kind": "escalation" if ref else "sms", "cause": None, "boxes": [], "channel": "sms"}
            if ref:
                entry["alarm_id"] = ref.group(2)
            self.notifications.append(entry)
        self._sms_seen = len(sms)
