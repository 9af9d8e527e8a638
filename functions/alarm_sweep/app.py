"""AlarmSweep: on its schedule, whatever the alarm path left to do at a time: one summary push per
flood hold window that held alarms (docs/claims.md "Flood hold-down")."""

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from boxwatch.deadletter import Refusals
from boxwatch.due import sweep_due
from boxwatch.errors import Rejected
from boxwatch.models import bind_tables
from boxwatch.outage import ScheduledEvent
from boxwatch.settings import Settings

SETTINGS = Settings.from_env(os.environ)
bind_tables(SETTINGS)
logger = Logger()
tracer = Tracer()
metrics = Metrics()
sns = boto3.client("sns")
sqs = boto3.client("sqs")
# without the event's time there is no "now" to judge what is due: refuse, the next tick comes
REFUSE = Refusals(logger, metrics, sqs, SETTINGS.rejected_input_queue, what="scheduled event",
                  metric="ScheduledEventsRejected")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        now_ms = ScheduledEvent.parse(event).at_ms  # due is judged in the schedule's event time
    except Rejected as exc:
        return REFUSE(exc, event, context.function_name)
    result = sweep_due(now_ms, sns)
    metrics.add_metric(name="DueItemsDone", unit=MetricUnit.Count, value=len(result.done))
    metrics.add_metric(name="DueItemsFailed", unit=MetricUnit.Count, value=len(result.failed))
    metrics.add_metric(name="NotificationsSent", unit=MetricUnit.Count, value=result.sent)
    if result.done or result.failed or result.unknown:
        logger.info("due items swept", extra={"at": now_ms, "done": result.done[:50], "failed": result.failed[:50],
                                              "unknown": result.unknown[:10], "busy": result.busy})
    return {"status": "swept", "at": now_ms, "done": result.done, "failed": result.failed, "notified": result.sent}
