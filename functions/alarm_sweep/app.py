"""AlarmSweep: on its schedule, whatever the alarm path left to do at a time: one summary push per
flood hold window that held alarms (docs/claims.md "Flood hold-down"), the escalation steps of
unacknowledged alarms, and the pushes an ack, a clear or an all-clear left unfinished
(docs/alarm-life.md)."""

import os
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from boxwatch import alarm_life, alarms
from boxwatch.due import sweep_due
from boxwatch.events import ScheduledEvent
from boxwatch.runtime import Runtime

DUE_KINDS = (alarms.SUMMARY_KIND, alarm_life.REMINDER)  # importing them registers their due kinds
# without the event's time there is no "now" to judge what is due: refuse, the next tick comes
RT = Runtime(os.environ, refusals=("scheduled event", "ScheduledEventsRejected"))
logger, metrics = RT.logger, RT.metrics


@RT.handler(ScheduledEvent, domain_refusals=False)
def lambda_handler(event: ScheduledEvent, context: LambdaContext) -> dict[str, Any]:
    now_ms = event.at_ms  # due is judged in the schedule's event time
    result = sweep_due(now_ms, RT.sns)
    metrics.add_metric(name="DueItemsDone", unit=MetricUnit.Count, value=len(result.done))
    metrics.add_metric(name="DueItemsFailed", unit=MetricUnit.Count, value=len(result.failed))
    metrics.add_metric(name="NotificationsSent", unit=MetricUnit.Count, value=result.sent)
    if result.done or result.failed or result.unknown:
        logger.info("due items swept", extra={"at": now_ms, "done": result.done[:50], "failed": result.failed[:50],
                                              "unknown": result.unknown[:10], "busy": result.busy})
    return {"status": "swept", "at": now_ms, "done": result.done, "failed": result.failed, "notified": result.sent}
