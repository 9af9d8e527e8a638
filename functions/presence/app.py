"""Presence: an AWS IoT lifecycle event (connect/disconnect) becomes the box's network status;
an unclean disconnect soon after an alarm warns the box's clients (third alarm)."""

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from boxwatch.deadletter import Refusals
from boxwatch.errors import Rejected
from boxwatch.models import bind_tables
from boxwatch.network import PresenceEvent, record_presence, third_alarm_idempotency
from boxwatch.settings import Settings

SETTINGS = Settings.from_env(os.environ)
bind_tables(SETTINGS)
IDEMPOTENCY = third_alarm_idempotency(SETTINGS)  # one third alarm per watched alarm, shared with the sweep
logger = Logger()
tracer = Tracer()
metrics = Metrics()
sns = boto3.client("sns")
sqs = boto3.client("sqs")
# bad input is refused, never retried (a retry cannot make it valid); dead-lettered for operators
REFUSE = Refusals(logger, metrics, sqs, SETTINGS.rejected_input_queue, what="lifecycle event",
                  metric="PresenceRejected")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    IDEMPOTENCY.register_lambda_context(context)
    try:
        result = record_presence(PresenceEvent.parse(event), SETTINGS, sns, IDEMPOTENCY)
    except Rejected as exc:
        return REFUSE(exc, event, context.function_name)
    logger.info("lifecycle event processed", extra={"box": result.box_id, "status": result.status,
                                                    "online": result.online, "version": result.version,
                                                    "third_alarm_seq": result.third_alarm_seq})
    # stale = late, duplicate or out of order: counted so a misbehaving broker or device shows up
    metrics.add_metric(name="PresenceApplied" if result.status == "applied" else "PresenceStale",
                       unit=MetricUnit.Count, value=1)
    sent = sum(len(r.sent) for r in result.reports.values())
    metrics.add_metric(name="NotificationsSent", unit=MetricUnit.Count, value=sent)
    return {"status": result.status, "box": result.box_id, "online": result.online,
            "third_alarm_seq": result.third_alarm_seq, "notified": sent}
