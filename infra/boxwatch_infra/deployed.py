"""A deployed boxwatch stack as the AWS SDK sees it (on AWS, or the local cloud through
AWS_ENDPOINT_URL): its outputs, and the domain's settings bound to its tables."""

from __future__ import annotations

from typing import Any


def describe(stack: str) -> dict[str, Any]:
    import boto3

    desc: dict[str, Any] = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    return desc


def stack_outputs(stack: str) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in describe(stack).get("Outputs", [])}


def stack_settings(stack: str) -> Any:
    """Settings whose table names and parameters are the deployed stack's (tables bound)."""
    from boxwatch.models import bind_tables
    from boxwatch.settings import Settings

    desc = describe(stack)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in desc.get("Outputs", [])}
    params = {p["ParameterKey"]: p["ParameterValue"] for p in desc.get("Parameters", [])}
    values = {
        "boxes_table": outputs["BoxesTableName"],
        "bindings_table": outputs["BindingsTableName"],
        "alarms_table": outputs["AlarmsTableName"],
    }
    if "DevicesTableName" in outputs:
        values["devices_table"] = outputs["DevicesTableName"]
    if "NeighbourRadiusM" in params:
        values["neighbour_radius_m"] = params["NeighbourRadiusM"]
    if "OutageRadiusM" in params:
        values["outage_radius_m"] = params["OutageRadiusM"]
    settings = Settings.from_mapping(values)
    bind_tables(settings)
    return settings
