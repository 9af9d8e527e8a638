"""CommandExpiry: on its schedule, a power-off not confirmed by its expiry becomes `expired` and
leaves the shadow's desired state, so a box back online later never acts on a stale order."""

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from boxwatch.commands import expire_due
from boxwatch.deadletter import Refusals
from boxwatch.errors import Rejected
from boxwatch.models import bind_tables
from boxwatch.outage import ScheduledEvent
from boxwatch.settings import Settings

SETTINGS = Settings.from_env(os.environ)
bind_tables(SETTINGS)
logger = Logger()
tracer = Tracer()
metrics = Metrics()
iotdata = boto3.client("iot-data")
sns = boto3.client("sns")
sqs = boto3.client("sqs")
# without the event's time there is no "now" to expire against: refuse, the next tick comes
REFUSE = Refusals(logger, metrics, sqs, SETTINGS.rejected_input_queue, what="scheduled event",
                  metric="ScheduledEventsRejected")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        now_ms = ScheduledEvent.parse(event).at_ms  # expiry is judged in the schedule's event time
    except Rejected as exc:
        return REFUSE(exc, event, context.function_name)
    expired = expire_due(now_ms, iotdata, sns)
    metrics.add_metric(name="CommandsExpired", unit=MetricUnit.Count, value=len(expired))
    if expired:
        logger.info("commands expired", extra={"commands": expired})
    return {"expired": expired}
