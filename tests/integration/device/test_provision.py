"""Provisioning against moto: thing, certificate, the template's device policy, agent files."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
from moto import mock_aws

from boxwatch_infra.device.provision import provision


@mock_aws
def test_provision_creates_thing_certificate_and_least_privilege_policy(tmp_path: Path) -> None:
    iot = boto3.client("iot", region_name="us-east-1")
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    # When a box is provisioned in an account without the stack
    config = provision("BX-000123", tmp_path, iot, cfn)
    # Then the thing exists with an active certificate that carries the template's device policy
    principals = iot.list_thing_principals(thingName="BX-000123")["principals"]
    assert principals == [config["certificate_arn"]]
    [policy] = iot.list_attached_policies(target=config["certificate_arn"])["policies"]
    doc = json.loads(iot.get_policy(policyName=policy["policyName"])["policyDocument"])
    resources = json.dumps(doc)
    assert "client/${iot:Connection.Thing.ThingName}" in resources
    assert "topic/boxwatch/boxes/${iot:Connection.Thing.ThingName}/alarms" in resources
    assert "${AWS::" not in resources and "${!" not in resources
    # and the agent's files are written
    assert (tmp_path / "cert.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert (tmp_path / "private.key").stat().st_mode & 0o077 == 0
    assert json.loads((tmp_path / "config.json").read_text())["endpoint"]
    # provisioning a second box reuses the policy
    second = provision("BX-000124", tmp_path / "b", iot, cfn)
    assert second["policy"] == config["policy"]
