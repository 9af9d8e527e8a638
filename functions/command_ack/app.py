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
from boxwatch.deadletter import Refusals
from boxwatch.errors import InvalidInput, Rejected
from boxwatch.models import bind_tables
from boxwatch.settings import Settings

SETTINGS = Settings.from_env(os.environ)
bind_tables(SETTINGS)
logger = Logger()
tracer = Tracer()
metrics = Metrics()
iotdata = boto3.client("iot-data")
sns = boto3.client("sns")
sqs = boto3.client("sqs")
# bad input is refused, never retried (a retry cannot make it valid); dead-lettered for operators
REFUSE = Refusals(logger, metrics, sqs, SETTINGS.rejected_input_queue, what="shadow documents",
                  metric="ShadowDocumentsRejected")


class ShadowDocuments(BaseModel):
    """`$aws/things/<thing>/shadow/update/documents`, plus the thing name the rule takes from the topic."""

    model_config = ConfigDict(extra="allow")
    thing: str = Field(pattern=BOX_ID_PATTERN)
    previous: dict[str, Any] | None = None
    current: dict[str, Any]
    timestamp: int = Field(ge=0)


def problems(exc: ValidationError) -> list[Any]:
    return list(exc.errors(include_url=False, include_context=False, include_input=False)[:5])


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        try:
            docs = ShadowDocuments.model_validate(event)
        except ValidationError as exc:
            raise InvalidInput("not a shadow documents message", problems=problems(exc)) from None
        result = acknowledge(docs.thing, docs.model_dump(), iotdata, sns)
    except Rejected as exc:
        return REFUSE(exc, event, context.function_name)
    if result.status in ("succeeded", "failed", "refused"):
        logger.info("command settled", extra={"command": result.command_id, "status": result.status})
        metrics.add_metric(name=f"Command{result.status.capitalize()}", unit=MetricUnit.Count, value=1)
    return {"status": result.status, "command_id": result.command_id, "notified": result.notified}
