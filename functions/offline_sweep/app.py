"""OfflineSweep: on a schedule, group boxes that went offline together (fourth alarm) and warn the
clients of the online boxes around them; resolve incidents whose boxes are back."""

import os
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from boxwatch.events import ScheduledEvent
from boxwatch.network import third_alarm_idempotency
from boxwatch.outage import sweep
from boxwatch.runtime import Runtime

# late third alarms share Presence's idempotency records
RT = Runtime(os.environ, refusals=("sweep event", "SweepRejected"), idempotency=third_alarm_idempotency)
logger, metrics = RT.logger, RT.metrics


@RT.handler(ScheduledEvent)
def lambda_handler(event: ScheduledEvent, context: LambdaContext) -> dict[str, Any]:
    # the schedule's own time, not the clock: a delayed or replayed sweep sees the same world
    result = sweep(event.at_ms, RT.settings, RT.sns, RT.idempotency, RT.sqs)
    sent = sum(len(c) for c in result.notified.values())
    # sizes, not members: a log event is at most 256 KB and an area outage has thousands
    logger.info("sweep done", extra={"at": result.at_ms, "candidates": result.candidates,
                                     "cluster_sizes": [len(c) for c in result.clusters],
                                     "opened": result.opened, "updated": result.updated, "resolved": result.resolved,
                                     "blips": result.blips, "storms": result.storms,
                                     "all_clears": {i: len(c) for i, c in result.all_clears.items()},
                                     "third_alarms": result.third_alarms, "parts": result.parts,
                                     "failed": result.failed[:10]})
    metrics.add_metric(name="SweepCandidates", unit=MetricUnit.Count, value=result.candidates)
    metrics.add_metric(name="OutageClusters", unit=MetricUnit.Count, value=len(result.clusters))
    metrics.add_metric(name="IncidentsResolved", unit=MetricUnit.Count, value=len(result.resolved))
    metrics.add_metric(name="OutageBlips", unit=MetricUnit.Count, value=len(result.blips))
    metrics.add_metric(name="NotificationsSent", unit=MetricUnit.Count, value=sent)
    metrics.add_metric(name="StormIncidents", unit=MetricUnit.Count, value=len(result.storms))
    metrics.add_metric(name="LateThirdAlarms", unit=MetricUnit.Count, value=len(result.third_alarms))
    metrics.add_metric(name="NotificationsFailed", unit=MetricUnit.Count, value=len(result.failed))
    return {"status": "swept", "at": result.at_ms, "clusters": result.clusters, "opened": result.opened,
            "updated": result.updated, "resolved": result.resolved, "blips": result.blips, "storms": result.storms,
            "parts": result.parts, "notified": sent}
