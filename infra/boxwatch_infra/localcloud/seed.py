"""Provisioning against a running local cloud, as an operator would on AWS: boxes into the
registry (through the stack's outputs, `deployed.stack_settings`), one IoT thing per box, the
stack's SNS platform applications (CloudFormation has none: an operator creates them), one phone
per client registered as the app does (`devices.register`, what POST /me/devices runs: an FCM
endpoint with CustomUserData = client id, and its device record), client bindings.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import boto3

from boxwatch.devices import register
from boxwatch.registry import BindingSpec, BoxSpec, bind, import_boxes
from boxwatch_infra.aws.events import phone_token
from boxwatch_infra.deployed import stack_settings


@dataclass(frozen=True)
class ClientSpec:
    id: str
    boxes: tuple[str, ...]
    locale: str = "en"
    role: str | None = None  # manager: an escalation contact of its boxes
    sms: str | None = None  # its E.164 number for the escalation SMS


def use_local_cloud(info: dict[str, Any]) -> None:
    """Point this process's AWS SDK (boto3, pynamodb) at the local cloud."""
    os.environ.update({"AWS_ENDPOINT_URL": info["moto"], "AWS_ENDPOINT_URL_IOT_DATA_PLANE": info["iot_data"],
                       "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_REGION": info["region"], "AWS_DEFAULT_REGION": info["region"]})
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)


def provision(info: dict[str, Any], boxes: Iterable[BoxSpec], clients: Iterable[ClientSpec]) -> dict[str, str]:
    """Register boxes and things, register each client's phone, bind clients; client id -> endpoint ARN."""
    use_local_cloud(info)
    settings = stack_settings(info["stack"])
    boxes = list(boxes)
    list(import_boxes(boxes, settings))
    iot = boto3.client("iot")
    for b in boxes:
        iot.create_thing(thingName=b.id)
    sns = boto3.client("sns")
    env = info["function_env"]["CommandApiFunction"]
    for arn in (env["FCM_APPLICATION_ARN"], env["APNS_APPLICATION_ARN"]):
        _, kind, name = arn.rsplit(":", 1)[-1].split("/")
        sns.create_platform_application(Name=name, Platform=kind, Attributes={"PlatformCredential": "local-key"})
    settings = replace(settings, fcm_application_arn=env["FCM_APPLICATION_ARN"],
                       apns_application_arn=env["APNS_APPLICATION_ARN"])
    endpoints: dict[str, str] = {}
    now_ms = int(time.time() * 1000)
    for c in clients:
        if c.id not in endpoints:
            endpoints[c.id] = register(c.id, "fcm", phone_token(c.id), c.locale, now_ms, settings, sns).endpoint
        for box in c.boxes:
            bind(BindingSpec(client_id=c.id, box_id=box, locale=c.locale,  # type: ignore[arg-type]
                             role=c.role, sms=c.sms))
    return endpoints
