"""CommandAck: the box's reported shadow (update/documents, via CommandAckRule) settles its
power-off command and tells the client who asked."""

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from boxwatch.commands import acknowledge
from boxwatch.contract import BOX_ID_PATTERN
from boxwatch.models import bind_tables
from boxwatch.settings import Settings

SETTINGS = Settings.from_env(os.environ)
bind_tables(SETTINGS)
logger = Logger()
tracer = Tracer()
metrics = Metrics()
iotdata = boto3.client("iot-data")
sns = boto3.client("sns")


class ShadowDocuments(BaseModel):
    """`$aws/things/<thing>/shadow/update/documents`, plus the thing name the rule takes from the topic."""

    model_config = ConfigDict(extra="allow")
    thing: str = Field(pattern=BOX_ID_PATTERN)
    previous: dict[str, Any] | None = None
    current: dict[str, Any]
    timestamp: int = Field(ge=0)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        docs = ShadowDocuments.model_validate(event)
    except ValidationError as exc:
        logger.warning("shadow documents refused", extra={"problems": exc.errors()[:5]})
        metrics.add_metric(name="ShadowDocumentsRejected", unit=MetricUnit.Count, value=1)
        return {"status": "rejected", "error": "invalid_input", "message": "not a shadow documents message"}
    result = acknowledge(docs.thing, docs.model_dump(), iotdata, sns)
    if result.status in ("succeeded", "failed"):
        logger.info("command settled", extra={"command": result.command_id, "status": result.status})
        metrics.add_metric(name=f"Command{result.status.capitalize()}", unit=MetricUnit.Count, value=1)
    return {"status": result.status, "command_id": result.command_id, "notified": result.notified}
