"""Presence: an AWS IoT lifecycle event (connect/disconnect) becomes the box's network status;
an unclean disconnect soon after an alarm warns the box's clients (third alarm)."""

import os
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from boxwatch.events import PresenceEvent
from boxwatch.network import record_presence, third_alarm_idempotency
from boxwatch.runtime import Runtime

# one third alarm per watched alarm, its idempotency records shared with the sweep
RT = Runtime(os.environ, refusals=("lifecycle event", "PresenceRejected"), idempotency=third_alarm_idempotency)
logger, metrics = RT.logger, RT.metrics


@RT.handler(PresenceEvent)
def lambda_handler(event: PresenceEvent, context: LambdaContext) -> dict[str, Any]:
    result = record_presence(event, RT.settings, RT.sns, RT.idempotency)
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
