"""The template's side of the doors (docs/security.md): the phones' API is throttled and capped,
the alarm path is not; the access log keeps the documented fields for the documented time; the
SMS cap and spend limit are parameters that reach the code; sign-up is closed."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from boxwatch_infra.aws.template import ROOT, Template, translate

ALARM_PATH = ("AlarmIngestFunction", "PresenceFunction", "OfflineSweepFunction")


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return translate()


def api_functions(t: Template) -> list[str]:
    return [name for name, fn in t.functions.items() if fn.events_of_type("HttpApi")]


def test_the_api_is_throttled_and_capped_and_the_alarm_path_is_not(cfn: dict[str, Any]) -> None:
    t = Template()
    # the HTTP API's default route is throttled by parameters
    [stage] = [v for v in cfn["Resources"].values() if v["Type"] == "AWS::ApiGatewayV2::Stage"]
    assert stage["Properties"]["DefaultRouteSettings"] == {"ThrottlingRateLimit": {"Ref": "ApiThrottleRateLimit"},
                                                           "ThrottlingBurstLimit": {"Ref": "ApiThrottleBurstLimit"}}
    for name in ("ApiThrottleRateLimit", "ApiThrottleBurstLimit", "ApiReservedConcurrency"):
        assert int(t.parameters[name]) >= 1
    # every function behind the API has its concurrency capped by a parameter
    assert api_functions(t) == ["CommandApiFunction", "OpsApiFunction"]  # the phones' and the operators'
    for fn in api_functions(t):
        assert cfn["Resources"][fn]["Properties"]["ReservedConcurrentExecutions"] == {"Ref": "ApiReservedConcurrency"}
    # and the alarm path is never capped, saying why to checkov
    for fn in ALARM_PATH:
        assert "ReservedConcurrentExecutions" not in cfn["Resources"][fn]["Properties"], fn
        skips = {s["id"]: s["comment"] for s in t.resources[fn]["Metadata"]["checkov"]["skip"]}
        assert "CommandApiFunction" in skips["CKV_AWS_115"] and "docs/security.md" in skips["CKV_AWS_115"], fn


def documented_access_log_fields() -> dict[str, str]:
    text = (ROOT / "docs" / "security.md").read_text()
    section = text.split("## Access log", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `([A-Za-z]+)` \| `(\$context[.A-Za-z]+)` \|", section, re.M))


def test_access_log_fields_are_the_documented_ones(cfn: dict[str, Any]) -> None:
    t = Template()
    settings = t.resources["CommandHttpApi"]["Properties"]["AccessLogSettings"]
    fields = json.loads(settings["Format"])
    # the log format names exactly the fields docs/security.md explains, with the same variables
    assert fields == documented_access_log_fields()
    assert "sub" in fields and "status" in fields and "ip" in fields
    assert not any("header" in v.lower() or "body" in v.lower() for v in fields.values())
    # kept for the parameter's days
    logs = t.resources["CommandApiAccessLogs"]["Properties"]
    assert logs["RetentionInDays"] == {"Ref": "AccessLogRetentionDays"}
    assert int(t.parameters["AccessLogRetentionDays"]) in t.doc["Parameters"]["AccessLogRetentionDays"][
        "AllowedValues"]


def test_sms_cap_and_spend_limit_are_parameters_that_reach_the_code() -> None:
    t = Template(parameter_overrides={"SmsPerRecipientPerHour": 4})
    env = t.doc["Globals"]["Function"]["Environment"]["Variables"]
    assert str(t.resolve(env["SMS_PER_RECIPIENT_PER_HOUR"])) == "4"
    assert env["SMS_QUOTA_TABLE"] == {"Ref": "SmsQuotaTable"}
    assert t.doc["Outputs"]["SmsMonthlySpendLimitUsd"]["Value"] == {"Ref": "SmsMonthlySpendLimitUsd"}
    quota = t.resources["SmsQuotaTable"]["Properties"]
    assert quota["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_sign_up_is_closed_and_mfa_declared() -> None:
    pool = Template().resources["ClientUserPool"]["Properties"]
    assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert pool["MfaConfiguration"] == "OPTIONAL" and pool["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]
    policy = pool["Policies"]["PasswordPolicy"]
    assert policy["MinimumLength"] >= 12 and policy["TemporaryPasswordValidityDays"] <= 7
