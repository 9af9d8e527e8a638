"""AlarmIngest: an alarm log from AlarmIngestRule becomes a stored, located, correlated alarm
pushed to every client bound to the box (first and second alarm, flood hold-down)."""

import os
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from boxwatch.alarms import ingest_alarm
from boxwatch.events import AlarmEvent
from boxwatch.idempotency import alarm_idempotency
from boxwatch.runtime import Runtime

RT = Runtime(os.environ, refusals=("alarm", "AlarmsRejected"), idempotency=alarm_idempotency)
logger, metrics = RT.logger, RT.metrics


@RT.handler(AlarmEvent)
def lambda_handler(alarm: AlarmEvent, context: LambdaContext) -> dict[str, Any]:
    result = ingest_alarm(alarm, RT.settings, RT.sns, RT.idempotency)
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
