"""Provisioning a box for real AWS IoT: thing, certificate, the template's device policy, files.

The policy is the stack's `DevicePolicy` (policy variables bind a box to its own thing name and
topics). Where the stack is not deployed in the account (a lab account, moto), the policy is
created from the same template resource, never from a second copy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from boxwatch_infra.aws.template import Template

AMAZON_ROOT_CA1 = "https://www.amazontrust.com/repository/AmazonRootCA1.pem"


def device_policy_name(iot: Any, cloudformation: Any, template: Template) -> str:
    try:
        res = cloudformation.describe_stack_resource(StackName=template.stack_name, LogicalResourceId="DevicePolicy")
        return str(res["StackResourceDetail"]["PhysicalResourceId"])
    except Exception:  # no such stack here: create the policy from the template itself
        name = f"{template.stack_name}-DevicePolicy"
        if "DevicePolicy" not in template.resources:
            raise RuntimeError("template.yaml has no DevicePolicy resource") from None
        document = template.resolve(template.resources["DevicePolicy"]["Properties"]["PolicyDocument"])
        try:
            iot.get_policy(policyName=name)
        except iot.exceptions.ResourceNotFoundException:
            iot.create_policy(policyName=name, policyDocument=json.dumps(document))
        return name


def provision(thing: str, out: Path, iot: Any, cloudformation: Any, template: Template | None = None) -> dict[str, Any]:
    """Create thing + keys/certificate, attach policy and certificate; write what the agent needs."""
    template = template or Template()
    try:
        iot.describe_thing(thingName=thing)
    except iot.exceptions.ResourceNotFoundException:
        iot.create_thing(thingName=thing)
    cert = iot.create_keys_and_certificate(setAsActive=True)
    policy = device_policy_name(iot, cloudformation, template)
    iot.attach_policy(policyName=policy, target=cert["certificateArn"])
    iot.attach_thing_principal(thingName=thing, principal=cert["certificateArn"])
    endpoint = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "cert.pem").write_text(cert["certificatePem"])
    key = out / "private.key"
    key.write_text(cert["keyPair"]["PrivateKey"])
    key.chmod(0o600)
    config = {"thing": thing, "endpoint": endpoint, "port": 8883, "cert": str(out / "cert.pem"), "key": str(key),
              "ca": str(out / "AmazonRootCA1.pem"), "ca_download": AMAZON_ROOT_CA1, "policy": policy,
              "certificate_arn": cert["certificateArn"]}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return config
