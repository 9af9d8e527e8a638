"""CommandExpiry: on its schedule, a power-off not confirmed by its expiry becomes `expired` and
leaves the shadow's desired state, so a box back online later never acts on a stale order."""

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from boxwatch.commands import expire_due
from boxwatch.deadletter import dead_letter
from boxwatch.errors import InvalidInput
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


class ScheduledEvent(BaseModel):
    model_config = ConfigDict(extra="allow")
    time: AwareDatetime  # the schedule's own time: expiry is judged in event time


def problems(exc: ValidationError) -> list[Any]:
    return list(exc.errors(include_url=False, include_context=False, include_input=False)[:5])


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        now_ms = int(ScheduledEvent.model_validate(event).time.timestamp() * 1000)
    except ValidationError as exc:
        # without the event's time there is no "now" to expire against: refuse, the next tick comes
        refused = InvalidInput("not a scheduled event with a time", problems=problems(exc))
        logger.warning(refused.message, extra={"error": refused.code, **refused.details})
        metrics.add_metric(name="ScheduledEventsRejected", unit=MetricUnit.Count, value=1)
        dead_letter(sqs, SETTINGS.rejected_input_queue, context.function_name, event, refused)
        return {"status": "rejected", **refused.as_dict()}
    expired = expire_due(now_ms, iotdata, sns)
    metrics.add_metric(name="CommandsExpired", unit=MetricUnit.Count, value=len(expired))
    if expired:
        logger.info("commands expired", extra={"commands": expired})
    return {"expired": expired}
