"""Provisioning against a running local cloud, as an operator would on AWS: boxes into the
registry (through the stack's outputs, `deployed.stack_settings`), one IoT thing per box, one
mobile push endpoint per client phone (FCM, CustomUserData = client id), bindings.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import boto3

from boxwatch.registry import BindingSpec, BoxSpec, bind, import_boxes
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
    """Register boxes and things, create push endpoints, bind clients; client id -> endpoint ARN."""
    use_local_cloud(info)
    settings = stack_settings(info["stack"])
    boxes = list(boxes)
    list(import_boxes(boxes, settings))
    iot = boto3.client("iot")
    for b in boxes:
        iot.create_thing(thingName=b.id)
    sns = boto3.client("sns")
    app = sns.create_platform_application(Name="boxwatch-app", Platform="GCM",
                                          Attributes={"PlatformCredential": "local-fcm-key"})["PlatformApplicationArn"]
    endpoints: dict[str, str] = {}
    for c in clients:
        if c.id not in endpoints:
            endpoints[c.id] = sns.create_platform_endpoint(PlatformApplicationArn=app, Token=f"fcm-{c.id}",
                                                           CustomUserData=c.id)["EndpointArn"]
        for box in c.boxes:
            bind(BindingSpec(client_id=c.id, box_id=box, target=endpoints[c.id], locale=c.locale,  # type: ignore[arg-type]
                             role=c.role, sms=c.sms))  # type: ignore[arg-type]
    return endpoints
