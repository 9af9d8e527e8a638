"""Refused input goes to RejectedInputQueue with its error, so that an operator can read it and,
once the cause is fixed (a box registered, a device firmware corrected), replay it with
`boxwatch dlq replay --queue rejected`. A handler that returns normally gets no AWS dead letter."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from boxwatch.errors import Rejected

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger, Metrics
    from mypy_boto3_sqs import SQSClient

SOURCE = "boxwatch.rejected"
MAX_BODY_BYTES = 250_000  # SQS takes 256 KiB; keep room for the envelope
EXCERPT_CHARS = 4_000


def rejected_message(function_name: str, event: Any, exc: Rejected) -> str:
    """The dead letter: which function refused what, and why (the error as the handler returned it)."""
    body: dict[str, Any] = {"source": SOURCE, "function": function_name, "error": exc.as_dict(), "event": event}
    text = json.dumps(body, default=str, ensure_ascii=False)
    if len(text.encode()) <= MAX_BODY_BYTES:
        return text
    # an oversized input cannot be valid; keep enough of it to see what the device sent
    raw = json.dumps(event, default=str, ensure_ascii=False)
    body["event"] = None
    body["event_excerpt"] = raw[:EXCERPT_CHARS]
    body["event_bytes"] = len(raw.encode())
    body["error"] = {k: v for k, v in exc.as_dict().items() if len(json.dumps(v, default=str)) < EXCERPT_CHARS}
    return json.dumps(body, default=str, ensure_ascii=False)


def dead_letter(sqs: SQSClient, queue_url: str, function_name: str, event: Any, exc: Rejected) -> None:
    sqs.send_message(QueueUrl=queue_url, MessageBody=rejected_message(function_name, event, exc))


class Refusals:
    """How every asynchronously invoked handler refuses input: one structured warning, one metric
    (dimension `reason` = the error code), one dead letter, and a normal return so that neither
    Lambda nor IoT retries something a retry cannot make valid."""

    def __init__(self, logger: Logger, metrics: Metrics, sqs: SQSClient, queue_url: str, *, what: str,
                 metric: str) -> None:
        self.logger, self.metrics, self.sqs, self.queue_url = logger, metrics, sqs, queue_url
        self.what, self.metric = what, metric

    def __call__(self, exc: Rejected, event: Any, function_name: str) -> dict[str, Any]:
        from aws_lambda_powertools.metrics import MetricUnit  # the layer ships powertools; only refusals need it

        self.logger.warning(f"{self.what} rejected: {exc.message}", extra={"error": exc.code, **exc.details})
        self.metrics.add_dimension(name="reason", value=exc.code)
        self.metrics.add_metric(name=self.metric, unit=MetricUnit.Count, value=1)
        dead_letter(self.sqs, self.queue_url, function_name, event, exc)
        return {"status": "rejected", **exc.as_dict()}
