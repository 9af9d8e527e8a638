"""Issue 6: the local cloud's pure parts, without starting it (fast)."""

from __future__ import annotations

import json

import pytest

from boxwatch_infra.aws.events import UnsupportedSchedule, rate_seconds
from boxwatch_infra.aws.template import Template, translate
from boxwatch_infra.localcloud.httpapi import Route, _claims, mint_token
from boxwatch_infra.localcloud.phones import decode
from boxwatch_infra.localcloud.stack import moto_cfn_types, stack_document


def test_rates_run_and_cron_fails_loudly() -> None:
    assert rate_seconds("rate(1 minute)") == 60
    assert rate_seconds("rate(5 minutes)") == 300
    assert rate_seconds("rate(2 hours)") == 7200
    with pytest.raises(UnsupportedSchedule):
        rate_seconds("cron(0 12 * * ? *)")
    # seconds are below EventBridge's minute: only virtual-time replay asks for them
    with pytest.raises(UnsupportedSchedule):
        rate_seconds("rate(30 seconds)")
    assert rate_seconds("rate(30 seconds)", seconds=True) == 30


def test_what_moto_cannot_create_is_derived_and_its_references_replaced() -> None:
    doc = translate()
    supported = moto_cfn_types()
    local = {k for k, v in doc["Resources"].items() if v["Type"] not in supported}
    kinds = {doc["Resources"][k]["Type"] for k in local}
    assert "AWS::IoT::TopicRule" in kinds and "AWS::DynamoDB::Table" not in kinds
    rest, outputs = stack_document(doc, Template(), {k: doc["Resources"][k]["Type"] for k in local})
    assert set(rest) == set(doc["Resources"]) - local
    text = json.dumps([rest, outputs])
    for k in local:  # no Ref / GetAtt / ${..} to a resource that is not in the stack
        assert f'"Ref": "{k}"' not in text and f'["{k}",' not in text and "${" + k not in text
    # and the references to the stack's own resources are left for CloudFormation
    assert '"Ref": "AlarmsTable"' in text and '"Fn::GetAtt": ["AsyncFailureQueue", "Arn"]' in text


def test_http_api_routes_and_local_tokens() -> None:
    route = Route("POST", "/boxes/{box_id}/power-off", "CommandApiFunction", {"jwtConfiguration": {}})
    m = route.pattern.match("/boxes/BX-1/power-off")
    assert m and m.groupdict() == {"box_id": "BX-1"}
    assert not route.pattern.match("/boxes/BX-1/power-off/x")
    assert _claims("local:alice") == {"sub": "alice"}
    claims = _claims(mint_token("bob", "app-client"))
    assert claims is not None and claims["sub"] == "bob" and claims["aud"] == "app-client"
    assert _claims("garbage") is None


def test_phone_decodes_fcm_apns_and_sms() -> None:
    data = {"kind": "alarm", "box": "BX-1"}
    fcm = json.dumps({"notification": {"title": "T", "body": "B"}, "data": {"boxwatch": json.dumps(data)}})
    apns = json.dumps({"aps": {"alert": {"title": "T2", "body": "B2"}}, "boxwatch": data})
    message = json.dumps({"default": "T\nB", "GCM": fcm, "APNS": apns})
    assert decode(message, "arn:aws:sns:us-east-1:1:endpoint/GCM/app/x") == ("T", "B", data)
    assert decode(message, "arn:aws:sns:us-east-1:1:endpoint/APNS/app/x") == ("T2", "B2", data)
    assert decode("Alarm: text", "+8613800000000") == ("Alarm", "text", {})
    assert decode("Title\nBody", "arn:aws:sns:us-east-1:1:boxwatch-client-zoe") == ("Title", "Body", {})
