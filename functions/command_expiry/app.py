"""CommandExpiry: on its schedule, a power-off not confirmed by its expiry becomes `expired` and
leaves the shadow's desired state, so a box back online later never acts on a stale order."""

import os
from datetime import datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict

from boxwatch.commands import expire_due
from boxwatch.models import bind_tables
from boxwatch.settings import Settings

SETTINGS = Settings.from_env(os.environ)
bind_tables(SETTINGS)
logger = Logger()
tracer = Tracer()
metrics = Metrics()
iotdata = boto3.client("iot-data")
sns = boto3.client("sns")


class ScheduledEvent(BaseModel):
    model_config = ConfigDict(extra="allow")
    time: datetime  # the schedule's own time: expiry is judged in event time


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    now_ms = int(ScheduledEvent.model_validate(event).time.timestamp() * 1000)
    expired = expire_due(now_ms, iotdata, sns)
    metrics.add_metric(name="CommandsExpired", unit=MetricUnit.Count, value=len(expired))
    if expired:
        logger.info("commands expired", extra={"commands": expired})
    return {"expired": expired}
