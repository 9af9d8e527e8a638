"""AlarmIngest: an alarm log from AlarmIngestRule becomes a stored, located, correlated alarm
pushed to every client bound to the box (first and second alarm, flood hold-down)."""

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from boxwatch.alarms import ingest_alarm
from boxwatch.contract import AlarmEvent
from boxwatch.deadletter import Refusals
from boxwatch.errors import Rejected
from boxwatch.idempotency import alarm_idempotency
from boxwatch.models import bind_tables
from boxwatch.settings import Settings

SETTINGS = Settings.from_env(os.environ)
bind_tables(SETTINGS)
IDEMPOTENCY = alarm_idempotency(SETTINGS)
logger = Logger()
tracer = Tracer()
metrics = Metrics()
sns = boto3.client("sns")
sqs = boto3.client("sqs")
# bad input is refused, never retried (a retry cannot make it valid); dead-lettered for operators
REFUSE = Refusals(logger, metrics, sqs, SETTINGS.rejected_input_queue, what="alarm",
                  metric="AlarmsRejected")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    IDEMPOTENCY.register_lambda_context(context)
    try:
        result = ingest_alarm(AlarmEvent.parse(event), SETTINGS, sns, IDEMPOTENCY)
    except Rejected as exc:
        return REFUSE(exc, event, context.function_name)
    logger.info("alarm processed", extra={"box": result.box_id, "seq": result.seq, "status": result.status,
                                          "held": result.held, "neighbours": [n.id for n in result.neighbours][:30]})
    metrics.add_metric(name="AlarmsDuplicate" if result.status == "duplicate" else "AlarmsStored",
                       unit=MetricUnit.Count, value=1)
    if result.status != "duplicate" and result.seq_reused:
        # a box whose counter restarted (or firmware reusing numbers): stored as a new alarm, flagged
        logger.warning("sequence number reused with other content: stored as a new alarm",
                       extra={"box": result.box_id, "seq": result.seq, "record": result.record_sk})
        metrics.add_metric(name="AlarmSeqReused", unit=MetricUnit.Count, value=1)
    if result.status != "duplicate" and result.held:
        metrics.add_metric(name="AlarmsHeld", unit=MetricUnit.Count, value=1)
    sent = sum(len(r.sent) for r in result.reports.values())
    metrics.add_metric(name="NotificationsSent", unit=MetricUnit.Count, value=sent)
    return {"status": result.status, "box": result.box_id, "seq": result.seq, "notified": sent,
            "held": result.held, "seq_reused": result.seq_reused}
