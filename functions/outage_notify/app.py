"""OutageNotify: one area part of a large incident's warnings (fourth alarm), queued by OfflineSweep.
Each message is told on its own; one that fails (a push, contention, throttling) is reported back
to SQS, which hands it out again after the queue's visibility timeout, then dead-letters it."""

import os
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from boxwatch.events import OutagePartsEvent
from boxwatch.outage_notify import warn_part
from boxwatch.runtime import Runtime

RT = Runtime(os.environ, refusals=("outage parts", "PartsRejected"))
logger, metrics = RT.logger, RT.metrics


@RT.handler(OutagePartsEvent)
def lambda_handler(event: OutagePartsEvent, context: LambdaContext) -> dict[str, Any]:
    failures = []
    for record in event.Records:
        part = record.body
        try:
            result = warn_part(part, RT.settings, RT.sns)
        except Exception:
            logger.exception("part failed", extra={"incident": part.incident, "part": part.part})
            failures.append({"itemIdentifier": record.messageId})
            continue
        sent = sum(len(c) for c in result.notified.values())
        logger.info("part told", extra={"incident": part.incident, "part": part.part, "at": part.at_ms,
                                        "cells": len(part.cells), "notified": sent, "failed": result.failed[:10]})
        metrics.add_metric(name="NotificationsSent", unit=MetricUnit.Count, value=sent)
        metrics.add_metric(name="NotificationsFailed", unit=MetricUnit.Count, value=len(result.failed))
        if result.failed:
            failures.append({"itemIdentifier": record.messageId})  # SQS hands it out again
    return {"batchItemFailures": failures}
