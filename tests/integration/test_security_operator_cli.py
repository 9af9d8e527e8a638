"""The operator's side of the doors, against moto: clients are invited (the pool allows no sign-up),
and the deployment sets the account's SMS spend limit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from boxwatch_infra.cli import main
from boxwatch_infra.sandbox import Sandbox

STACK = "boxwatch-doors"


def user_pool_request(sb: Sandbox) -> dict[str, Any]:
    """CreateUserPool with the template's ClientUserPool properties (CloudFormation names -> API names)."""
    raw = dict(sb.template.resources["ClientUserPool"]["Properties"])
    raw["SmsConfiguration"] = {**raw["SmsConfiguration"], "SnsCallerArn": "arn:aws:iam::123456789012:role/sms"}
    props = dict(sb.template.resolve(raw))
    props["PoolName"] = props.pop("UserPoolName")
    props.pop("EnabledMfas")  # CloudFormation only: the API sets it with SetUserPoolMfaConfig
    return props


@pytest.fixture
def stack() -> Iterator[tuple[Sandbox, str]]:
    with Sandbox() as sb:
        # Given the template's user pool and a stack whose outputs name it and the SMS spend limit
        idp = sb.client("cognito-idp")
        pool = idp.create_user_pool(**user_pool_request(sb))["UserPool"]["Id"]
        body = {"Parameters": {"SmsMonthlySpendLimitUsd": {"Type": "Number", "Default": "100"}},
                "Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {"ClientUserPoolId": {"Value": pool},
                            "SmsMonthlySpendLimitUsd": {"Value": {"Ref": "SmsMonthlySpendLimitUsd"}}}}
        sb.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(body))
        yield sb, pool


def test_the_template_closes_sign_up(stack: tuple[Sandbox, str]) -> None:
    sb, pool = stack
    described = sb.client("cognito-idp").describe_user_pool(UserPoolId=pool)["UserPool"]
    assert described["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    policy = described["Policies"]["PasswordPolicy"]
    assert policy["MinimumLength"] >= 12 and policy["RequireNumbers"] and policy["TemporaryPasswordValidityDays"] <= 7
    props = sb.template.resources["ClientUserPool"]["Properties"]
    assert props["MfaConfiguration"] in ("OPTIONAL", "ON") and props["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]
    app = sb.template.resources["ClientAppClient"]["Properties"]
    assert app["PreventUserExistenceErrors"] == "ENABLED" and app["GenerateSecret"] is False


def test_invite_a_client_by_phone_and_by_email(stack: tuple[Sandbox, str], capsys: pytest.CaptureFixture[str]) -> None:
    sb, pool = stack
    # When the operator invites a client by phone number
    assert main(["clients", "invite", "--phone", "+8613800138000", "--stack", STACK]) == 0
    invited = json.loads(capsys.readouterr().out)
    # Then an account exists, waiting for its first sign-in, and its sub is the client id to bind
    users = sb.client("cognito-idp").list_users(UserPoolId=pool)["Users"]
    [user] = users
    attrs = {a["Name"]: a["Value"] for a in user["Attributes"]}
    assert user["UserStatus"] == "FORCE_CHANGE_PASSWORD" and attrs["phone_number"] == "+8613800138000"
    assert invited["client_id"] == attrs["sub"] and invited["invited_by"] == "sms"
    # by e-mail too
    assert main(["clients", "invite", "--email", "li.wei@example.com", "--stack", STACK]) == 0
    assert json.loads(capsys.readouterr().out)["invited_by"] == "email"
    # inviting the same number again is refused with a hint, unless --resend
    assert main(["clients", "invite", "--phone", "+8613800138000", "--stack", STACK]) == 2
    assert "--resend" in capsys.readouterr().err
    assert main(["clients", "invite", "--phone", "+8613800138000", "--resend", "--stack", STACK]) == 0


@pytest.mark.parametrize("who", [["--phone", "13800138000"], ["--phone", "+86 138"], ["--email", "not-an-address"]])
def test_invite_refuses_what_is_not_a_number_or_an_address(stack: tuple[Sandbox, str], who: list[str]) -> None:
    sb, pool = stack
    assert main(["clients", "invite", *who, "--stack", STACK]) == 2
    assert sb.client("cognito-idp").list_users(UserPoolId=pool)["Users"] == []


def test_deploy_sets_and_checks_the_account_sms_spend_limit(stack: tuple[Sandbox, str],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    sb, _ = stack
    sns = sb.client("sns")
    # Given an account whose limit nobody set / Then the check fails (a CI gate after deploy)
    assert main(["sms", "spend-limit", "--check", "--stack", STACK]) == 1
    capsys.readouterr()
    # When the deployment sets it / Then the account's limit is the stack's, and the check passes
    assert main(["sms", "spend-limit", "--stack", STACK]) == 0
    assert json.loads(capsys.readouterr().out) == {"stack_limit_usd": 100.0, "account_limit_usd": 100.0, "ok": True}
    assert sns.get_sms_attributes(attributes=["MonthlySpendLimit"])["attributes"]["MonthlySpendLimit"] == "100"
    assert main(["sms", "spend-limit", "--check", "--stack", STACK]) == 0
    # and someone raising the account's limit above the stack's is caught
    sns.set_sms_attributes(attributes={"MonthlySpendLimit": "5000"})
    assert main(["sms", "spend-limit", "--check", "--stack", STACK]) == 1
