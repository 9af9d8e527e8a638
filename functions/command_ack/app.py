"""CommandAck: the box's reported shadow (update/documents, via CommandAckRule) settles its
power-off command and tells the client who asked."""

import os
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from boxwatch.events import ShadowDocuments
from boxwatch.power_off import acknowledge
from boxwatch.runtime import Runtime

RT = Runtime(os.environ, refusals=("shadow documents", "ShadowDocumentsRejected"))
logger, metrics = RT.logger, RT.metrics


@RT.handler(ShadowDocuments)
def lambda_handler(docs: ShadowDocuments, context: LambdaContext) -> dict[str, Any]:
    result = acknowledge(docs.thing, docs.model_dump(), RT.iotdata, RT.sns)
    if result.status in ("succeeded", "failed", "refused"):
        logger.info("command settled", extra={"command": result.command_id, "status": result.status})
        metrics.add_metric(name=f"Command{result.status.capitalize()}", unit=MetricUnit.Count, value=1)
    return {"status": result.status, "command_id": result.command_id, "notified": result.notified}
