"""Every inbound event is read one way (`boxwatch.events.parse`) and refused in one shape, whatever
the handler; and a handler's import stays light (no tracer, no boto3 until a call needs them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from boxwatch import bounds
from boxwatch.errors import InvalidInput
from boxwatch.events import (
    AlarmEvent,
    Inbound,
    OutagePartsEvent,
    PresenceEvent,
    ScheduledEvent,
    ShadowDocuments,
    parse,
)
from boxwatch.runtime import tracing_enabled

ROOT = Path(__file__).parents[2]
EVENTS = ROOT / "events"
MODELS: list[tuple[type[Inbound], str]] = [
    (AlarmEvent, "alarm.json"),
    (PresenceEvent, "presence_disconnected_keepalive.json"),
    (ScheduledEvent, "scheduled_sweep.json"),
    (ShadowDocuments, "shadow_documents_ack.json"),
    (OutagePartsEvent, "outage_part.json"),
]


def load(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


@pytest.mark.parametrize(("model", "sample"), MODELS)
def test_the_sample_events_parse(model: type[Inbound], sample: str) -> None:
    # Given the real-shaped sample of each event type, When parsed, Then it is its model
    assert isinstance(parse(model, load(sample)), model)


@pytest.mark.parametrize(("model", "sample"), MODELS)
@pytest.mark.parametrize("not_an_object", [None, [], "text", 7])
def test_what_is_not_an_object_is_refused_alike(model: type[Inbound], sample: str, not_an_object: Any) -> None:
    # When something other than a JSON object arrives
    with pytest.raises(InvalidInput) as err:
        parse(model, not_an_object)
    # Then the refusal says what was expected and what came
    assert err.value.message == f"{model.WHAT} must be a JSON object"
    assert err.value.details == {"got": type(not_an_object).__name__}


@pytest.mark.parametrize(("model", "sample"), MODELS)
def test_an_invalid_event_is_refused_in_one_shape(model: type[Inbound], sample: str) -> None:
    # Given a sample event with every field of it replaced by something no model accepts, and a
    # field name longer than any bound
    event = {k: {"nested": [None]} for k in load(sample)} | {"x" * 500: 1}
    # When parsed
    with pytest.raises(InvalidInput) as err:
        parse(model, event)
    # Then: "<what> failed validation", the event's identity when it has one (unreadable here),
    # and at most ten problems, each a bounded field name and message
    details = err.value.details
    assert err.value.message == f"{model.WHAT} failed validation"
    assert set(details) == {"problems"} | ({model.IDENTITY[0]} if model.IDENTITY else set())
    if model.IDENTITY:
        assert details[model.IDENTITY[0]] is None
    problems = details["problems"]
    assert 1 <= len(problems) <= 10
    for p in problems:
        assert set(p) == {"field", "problem"}
        assert len(p["field"]) <= bounds.FIELD_CHARS and len(p["problem"]) <= bounds.TEXT_CHARS


def test_a_readable_identity_is_kept_bounded() -> None:
    # Given a lifecycle event of a named client with a bad version number
    event = load("presence_disconnected_keepalive.json") | {"versionNumber": "v5", "clientId": "B" * 300}
    # When parsed, Then the refusal names the client (bounded), and the field at fault
    with pytest.raises(InvalidInput) as err:
        parse(PresenceEvent, event)
    assert err.value.details["client_id"] == bounds.text("B" * 300, 128) and len(err.value.details["client_id"]) <= 128
    assert {"versionNumber", "clientId"} <= {p["field"] for p in err.value.details["problems"]}


@pytest.mark.parametrize(
    ("env", "traced"),
    [
        ({}, False),  # outside Lambda
        ({"LAMBDA_TASK_ROOT": "/var/task"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "0"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "AWS_SAM_LOCAL": "true"}, False),
    ],
)
def test_tracing_follows_powertools_rule(env: dict[str, str], traced: bool) -> None:
    assert tracing_enabled(env) is traced


@pytest.mark.parametrize("function", sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "app.py").exists()))
def test_a_handler_import_loads_no_tracer_and_no_boto3(function: str) -> None:
    # Given a fresh interpreter with a Lambda-like environment (tracing on)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update({"AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "LAMBDA_TASK_ROOT": "/var/task"})
    code = ("import sys, app; "
            "print(sorted(m for m in ('boto3', 'aws_xray_sdk', 's3transfer') if m in sys.modules))")
    # When the handler module is imported from its folder, as Lambda's task root (what a cold start
    # pays before the first call; `-c` puts the working directory first on the path)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         timeout=120, cwd=ROOT / "functions" / function)
    # Then neither the tracer's SDK nor boto3 was loaded: they come with the first call needing them
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_an_outage_part_whose_body_is_not_a_part_is_refused_with_the_field() -> None:
    # Given the parts queue's sample event with a body that names a cell that is not an H3 cell
    event = load("outage_part.json")
    body = json.loads(event["Records"][0]["body"]) | {"cells": ["not-a-cell"]}
    event["Records"][0]["body"] = json.dumps(body)
    # When parsed / Then it is refused, saying where
    with pytest.raises(InvalidInput) as err:
        parse(OutagePartsEvent, event)
    assert err.value.details["problems"][0]["field"].startswith("Records.0.body.cells")
    # and a body that is not JSON is refused alike
    event["Records"][0]["body"] = "{"
    with pytest.raises(InvalidInput):
        parse(OutagePartsEvent, event)
