"""OfflineSweep: on a schedule, group boxes that went offline together (fourth alarm) and warn the
clients of the online boxes around them; resolve incidents whose boxes are back."""

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from boxwatch.deadletter import Refusals
from boxwatch.errors import Rejected
from boxwatch.models import bind_tables
from boxwatch.network import third_alarm_idempotency
from boxwatch.outage import ScheduledEvent, sweep
from boxwatch.settings import Settings

SETTINGS = Settings.from_env(os.environ)
bind_tables(SETTINGS)
IDEMPOTENCY = third_alarm_idempotency(SETTINGS)  # late third alarms share Presence's records
logger = Logger()
tracer = Tracer()
metrics = Metrics()
sns = boto3.client("sns")
sqs = boto3.client("sqs")
# bad input is refused, never retried (a retry cannot make it valid); dead-lettered for operators
REFUSE = Refusals(logger, metrics, sqs, SETTINGS.rejected_input_queue, what="sweep event",
                  metric="SweepRejected")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    IDEMPOTENCY.register_lambda_context(context)
    try:
        # the schedule's own time, not the clock: a delayed or replayed sweep sees the same world
        result = sweep(ScheduledEvent.parse(event).at_ms, SETTINGS, sns, IDEMPOTENCY)
    except Rejected as exc:
        return REFUSE(exc, event, context.function_name)
    sent = sum(len(c) for c in result.notified.values())
    # sizes, not members: a log event is at most 256 KB and an area outage has thousands
    logger.info("sweep done", extra={"at": result.at_ms, "candidates": result.candidates,
                                     "cluster_sizes": [len(c) for c in result.clusters],
                                     "opened": result.opened, "updated": result.updated, "resolved": result.resolved,
                                     "blips": result.blips,
                                     "third_alarms": result.third_alarms, "failed": result.failed[:10]})
    metrics.add_metric(name="SweepCandidates", unit=MetricUnit.Count, value=result.candidates)
    metrics.add_metric(name="OutageClusters", unit=MetricUnit.Count, value=len(result.clusters))
    metrics.add_metric(name="IncidentsResolved", unit=MetricUnit.Count, value=len(result.resolved))
    metrics.add_metric(name="OutageBlips", unit=MetricUnit.Count, value=len(result.blips))
    metrics.add_metric(name="NotificationsSent", unit=MetricUnit.Count, value=sent)
    metrics.add_metric(name="LateThirdAlarms", unit=MetricUnit.Count, value=len(result.third_alarms))
    metrics.add_metric(name="NotificationsFailed", unit=MetricUnit.Count, value=len(result.failed))
    return {"status": "swept", "at": result.at_ms, "clusters": result.clusters, "opened": result.opened,
            "updated": result.updated, "resolved": result.resolved, "blips": result.blips, "notified": sent}
