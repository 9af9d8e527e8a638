"""Runs a scenario through `boxwatch replay` (the Replay class) and holds it against the model.

The only module of tests/model that imports the system. Each push is attributed to the step
(scenario event or schedule tick) during which a handler published it, and replay's steps are
checked against the model's timeline, so that both walk the same order.

Speed: building a Sandbox (moto, tables, handler modules) costs ~0.4 s, more than most small
scenarios. `SandboxPool` keeps one entered sandbox per parameter set and empties moto's backends
between scenarios (tables, topics, queues and things are recreated from the template).
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.model.check import Result, check
from tests.model.model import Model
from tests.model.world import template_parameters


class TimelineMismatch(AssertionError):
    """Replay delivered other steps than the model walked: world.timeline must follow replay."""


def _replay_cls() -> Any:
    from boxwatch_infra.replay import Replay
    from boxwatch_infra.sandbox import decode_push

    class ModelReplay(Replay):
        """Replay that remembers, per delivery, what was pushed (full push data)."""

        def __init__(self, scenario: Any):
            super().__init__(scenario)
            self.delivered: list[tuple[float, str, str]] = []
            self.pushes: list[dict[str, Any]] = []
            self._current: tuple[str, str] | None = None

        def _event(self, event: dict[str, Any]) -> None:
            self._current = ("event", str(event.get("type")))
            super()._event(event)

        def scheduled(self, function: str) -> Any:
            if self._current is None:
                self._current = ("tick", function)
            return super().scheduled(function)

        def collect(self) -> None:
            step = len(self.delivered)
            current = self._current or ("?", "?")
            self.delivered.append((self.t, *current))
            self._current = None
            for arn, messages in self.sb.pushed_messages().items():
                for message in messages[self._seen.get(arn, 0):]:
                    data = decode_push(message)
                    self.pushes.append({"step": step, "t": self.t, "client": self.endpoint_client.get(arn, arn),
                                        "kind": data.get("kind"), "data": data})
            before = len(self.notifications)
            super().collect()
            for n in self.notifications[before:]:
                if n.get("channel") == "sms":  # the SMS names its alarm: "<first_at ms>.<...>"
                    alarm_id = str(n.get("alarm_id") or "")
                    first = alarm_id.split(".")[0]
                    data = {"box": n.get("box"), "alarm_id": alarm_id,
                            "first_at": int(first) if first.isdigit() else None}
                    self.pushes.append({"step": step, "t": self.t, "client": n["client"], "kind": n["kind"],
                                        "data": data})

    return ModelReplay


def reset_sandbox(sb: Any) -> None:
    """Empty an entered sandbox for the next scenario: every table's items, moto's other services
    as new with the template's topics and queues again (same names: the handlers' clients fit)."""
    from moto.dynamodb.models import dynamodb_backends
    from moto.iot.models import iot_backends
    from moto.iotdata.models import iotdata_backends
    from moto.sns.models import sns_backends
    from moto.sqs.models import sqs_backends

    from boxwatch_infra.aws import sqs_source

    account, region = sb.template.account_id, sb.template.region
    # tables stay (creating nine costs more than a small scenario): only their items go
    for table in dynamodb_backends[account][region].tables.values():
        table.items.clear()
        table.__dict__.pop("_bench_gsi", None)  # moto_patches' index map of the items just dropped
        shard = getattr(table, "stream_shard", None)
        if shard is not None:
            shard.items.clear()
    for backends in (sns_backends, iot_backends, iotdata_backends, sqs_backends):
        if account in backends and region in backends[account]:
            backends[account][region].reset()
    sb.topics = sb.template.create_topics(sb.client("sns"))
    sb.queues = sb.template.create_queues(sb.client("sqs"))
    sqs_source.configure_queues(sb.template, sb.client("sqs"), sb.queues)
    sb._sent_to.clear()
    sb.platform_apps = sb.template.create_platform_applications(sb.client("sns"))  # the phones register on them
    sb.pending_mqtt.clear()
    sb.mqtt_log.clear()
    sb.counter.reset()
    sb.counter.interceptors[:] = [sb._observe_shadow, sb._observe_sqs]
    sb.before_retry.clear()
    sb.attempt = None
    sb.async_invokes = False
    sb.now_ms = 0


class SandboxPool:
    """One entered sandbox at a time, rebuilt only when the parameters change."""

    def __init__(self) -> None:
        self._stack: contextlib.ExitStack | None = None
        self._key: tuple[tuple[str, str], ...] | None = None
        self._sb: Any = None
        self.built = 0

    def get(self, parameters: dict[str, Any]) -> Any:
        from boxwatch_infra.sandbox import Sandbox

        key = tuple(sorted((k, str(v)) for k, v in parameters.items()))
        if key != self._key:
            self.close()
            self._stack = contextlib.ExitStack()
            self._sb = self._stack.enter_context(Sandbox(parameter_overrides=dict(parameters)))
            self._key = key
            self.built += 1
        else:
            reset_sandbox(self._sb)
        return self._sb

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack, self._key, self._sb = None, None, None


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """powertools writes logs and metrics to stdout (as in Lambda): keep them out of the test output."""
    saved_stdout = sys.stdout
    sys.stdout = io.StringIO()
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        sys.stdout = saved_stdout
        logging.disable(logging.NOTSET)


def fit_to_template(scenario: dict[str, Any]) -> dict[str, Any]:
    """Drop settings the template does not declare (e.g. the flood parameters before the flood
    rule exists): the model then uses the template's or docs/claims.md's defaults, as the system."""
    known = template_parameters()
    settings = {k: v for k, v in (scenario.get("settings") or {}).items()
                if "".join(p.capitalize() for p in k.split("_")) in known}
    return {**scenario, "settings": settings}


@dataclass
class Outcome:
    model: Model
    result: Result
    report: dict[str, Any]
    pushes: list[dict[str, Any]]


def run(scenario: dict[str, Any], pool: SandboxPool | None = None, kinds: tuple[str, ...] | None = None) -> Outcome:
    from boxwatch_infra.replay import Scenario

    scenario = fit_to_template(scenario)
    model = Model(scenario)
    replay = _replay_cls()(Scenario.model_validate(scenario))
    with quiet():
        report = replay.run() if pool is None else replay.run(pool.get(replay.parameters))
    want = [s.describe() for s in model.steps]
    if replay.delivered != want:
        first = next((i for i, (a, b) in enumerate(zip(replay.delivered, want, strict=False)) if a != b),
                     min(len(want), len(replay.delivered)))
        raise TimelineMismatch(f"replay delivered {len(replay.delivered)} steps, the model walked {len(want)}; "
                               f"first difference at step {first}: replay "
                               f"{replay.delivered[first:first + 1]} model {want[first:first + 1]}")
    result = check(model, replay.pushes, report.get("commands"), kinds)
    return Outcome(model, result, report, replay.pushes)
