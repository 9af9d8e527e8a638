"""The AWS emulation core (`boxwatch_infra.aws`) that the sandbox and the local cloud share: the
one intrinsic resolver, Lambda's asynchronous retries, the event factories, rate()."""

from __future__ import annotations

from typing import Any

import pytest

from boxwatch_infra.aws import lambda_async
from boxwatch_infra.aws.events import (
    UnsupportedSchedule,
    lifecycle_event,
    phone_token,
    rate_seconds,
    scheduled_event,
)
from boxwatch_infra.aws.template import Template, resolve, translate

NAMES = {"AWS::Region": "eu-west-1", "Stage": "prod", "Api": "api-1", "Queue.Arn": "arn:aws:sqs:q"}


def test_the_resolver_answers_refs_subs_getatts_joins_and_selects() -> None:
    # Given a fragment with every intrinsic the template uses, and its escape for a literal ${...}
    fragment = {
        "a": {"Ref": "Stage"},
        "b": {"Fn::Sub": "arn:${AWS::Region}:${Api}/${!iot:Connection.Thing.ThingName}"},
        "c": {"Fn::Sub": ["${__ApiId__}/${__Stage__}/${Stage}", {"__ApiId__": {"Ref": "Api"}, "__Stage__": "*"}]},
        "d": {"Fn::GetAtt": ["Queue", "Arn"]},
        "e": {"Fn::Join": ["-", [{"Ref": "Stage"}, "x"]]},
        "f": {"Fn::Select": [1, ["p", {"Ref": "Api"}]]},
    }
    # When it is resolved
    out = resolve(fragment, NAMES)
    # Then nothing intrinsic is left, and the input is untouched
    assert out == {"a": "prod", "b": "arn:eu-west-1:api-1/${iot:Connection.Thing.ThingName}", "c": "api-1/*/prod",
                   "d": "arn:aws:sqs:q", "e": "prod-x", "f": "api-1"}
    assert fragment["a"] == {"Ref": "Stage"}


def test_an_unknown_name_fails_unless_partial() -> None:
    # Given references to names the resolver does not know
    for fragment in ({"Ref": "Nope"}, {"Fn::GetAtt": ["Nope", "Arn"]}, {"Fn::Sub": "${Nope}-${Stage}"}):
        # Then a full resolution refuses it
        with pytest.raises(KeyError):
            resolve(fragment, NAMES)
    # And a partial one (the local cloud's stack document) replaces the known names only
    assert resolve({"Fn::Sub": "${Nope}-${Stage}"}, NAMES, partial=True) == {"Fn::Sub": "${Nope}-prod"}
    assert resolve({"Fn::Join": ["-", [{"Ref": "Nope"}, {"Ref": "Api"}]]}, NAMES, partial=True) == {
        "Fn::Join": ["-", [{"Ref": "Nope"}, "api-1"]]}


def test_the_template_names_its_resources_as_a_local_stack() -> None:
    # Given the template with a parameter override
    t = Template(parameter_overrides={"NeighbourRadiusM": 500})
    # Then parameters, pseudo parameters, physical names and attributes resolve
    assert t.resolve({"Ref": "NeighbourRadiusM"}) == "500"
    assert t.resolve({"Ref": "AlarmsTable"}) == "boxwatch-AlarmsTable"
    assert t.resolve({"Fn::GetAtt": ["AlarmsTable", "Arn"]}) == \
        "arn:aws:dynamodb:us-east-1:123456789012:table/boxwatch-AlarmsTable"
    with pytest.raises(KeyError, match="not supported locally"):
        t.attribute("AlarmsTable", "StreamArn")


def test_sam_and_translated_templates_give_the_same_async_config() -> None:
    # Given the SAM template and what SAM translates it into (an AWS::Lambda::EventInvokeConfig each)
    t = Template()
    translated = Template()
    translated.__dict__["doc"] = translate(t)
    # Then every function has the same retries and OnFailure queue read either way
    for logical in t.functions:
        assert lambda_async.async_config(t, logical) == lambda_async.async_config(translated, logical)
        assert lambda_async.async_config(t, logical) == (2, "AsyncFailureQueue")


def test_retries_until_an_attempt_succeeds_then_stop() -> None:
    # Given an invocation failing its first two attempts
    calls: list[Any] = []

    def attempt(n: int) -> str:
        calls.append(("attempt", n))
        if n < 2:
            raise RuntimeError(f"boom {n}")
        return "ok"

    # When it is retried twice
    result, error = lambda_async.with_retries(attempt, 2, lambda n: calls.append(("wait", n)),
                                              lambda n, exc: calls.append(("error", n, str(exc))))
    # Then the third attempt's result comes back, each retry after its wait
    assert (result, error) == ("ok", None)
    assert calls == [("attempt", 0), ("error", 0, "boom 0"), ("wait", 1), ("attempt", 1), ("error", 1, "boom 1"),
                     ("wait", 2), ("attempt", 2)]


def test_exhausted_retries_return_the_last_error_and_an_interrupt_is_not_retried() -> None:
    # Given an invocation that always fails, with a crash no `except Exception` sees
    class Crash(BaseException):
        pass

    def crash(n: int) -> None:
        raise Crash(str(n))

    # Then after 1 + 2 attempts the last error is returned
    result, error = lambda_async.with_retries(crash, 2)
    assert result is None and isinstance(error, Crash) and str(error) == "2"
    # And Ctrl-C is never taken for a failed attempt

    def interrupted(n: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        lambda_async.with_retries(interrupted, 2)


def test_rate_expressions() -> None:
    assert rate_seconds("rate(1 minute)") == 60
    assert rate_seconds(" rate( 2 hours ) ") == 7200
    assert rate_seconds("rate(3 days)") == 3 * 86400
    assert rate_seconds("rate(30 seconds)", seconds=True) == 30
    for expression in ("rate(30 seconds)", "cron(0 12 * * ? *)", "rate(minute)"):
        with pytest.raises(UnsupportedSchedule):
            rate_seconds(expression)


def test_event_factories_give_what_aws_documents() -> None:
    # A schedule's event at 00:01:00 UTC
    event = scheduled_event(1767225660000, "123456789012", "us-east-1", "id-1", ["arn:aws:events:r"])
    assert event == {"version": "0", "id": "id-1", "detail-type": "Scheduled Event", "source": "aws.events",
                     "account": "123456789012", "time": "2026-01-01T00:01:00Z", "region": "us-east-1",
                     "resources": ["arn:aws:events:r"], "detail": {}}
    # A lifecycle event as replay makes it (deterministic session and principal) and as the local
    # broker does (its connection's)
    replayed = lifecycle_event("BX-1", "disconnected", 5, 3, 2, "MQTT_KEEP_ALIVE_TIMEOUT")
    assert replayed == lifecycle_event("BX-1", "disconnected", 5, 3, 2, "MQTT_KEEP_ALIVE_TIMEOUT")
    assert replayed["clientInitiatedDisconnect"] is False and replayed["versionNumber"] == 3
    assert replayed["sessionIdentifier"] != lifecycle_event("BX-1", "disconnected", 5, 3, 1)["sessionIdentifier"]
    live = lifecycle_event("BX-1", "connected", 5, 1, "session-7", principal="local", ip="127.0.0.1")
    assert live == {"clientId": "BX-1", "timestamp": 5, "eventType": "connected", "sessionIdentifier": "session-7",
                    "principalIdentifier": "local", "versionNumber": 1, "ipAddress": "127.0.0.1"}


def test_a_phone_token_is_valid_for_the_shortest_client_id() -> None:
    # Given the demo's client "bo" / Then its phone's token passes POST /me/devices' check
    from boxwatch.devices import TOKEN

    assert TOKEN.match(phone_token("bo")) and phone_token("bo") != phone_token("bob")
