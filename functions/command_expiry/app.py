"""CommandExpiry: on its schedule, a power-off not confirmed by its expiry becomes `expired` and
leaves the shadow's desired state, so a box back online later never acts on a stale order."""

import os
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from boxwatch.events import ScheduledEvent
from boxwatch.power_off import expire_due
from boxwatch.runtime import Runtime

# without the event's time there is no "now" to expire against: refuse, the next tick comes
RT = Runtime(os.environ, refusals=("scheduled event", "ScheduledEventsRejected"))
logger, metrics = RT.logger, RT.metrics


@RT.handler(ScheduledEvent, domain_refusals=False)
def lambda_handler(event: ScheduledEvent, context: LambdaContext) -> dict[str, Any]:
    expired = expire_due(event.at_ms, RT.iotdata, RT.sns)  # expiry is judged in the schedule's event time
    metrics.add_metric(name="CommandsExpired", unit=MetricUnit.Count, value=len(expired))
    if expired:
        logger.info("commands expired", extra={"commands": expired})
    return {"expired": expired}
