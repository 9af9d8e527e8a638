"""Lambda's SQS event source mapping, for both emulators (the sandbox drains, the local cloud polls).

A mapping (SAM `Events: Type: SQS`) receives up to `BatchSize` messages, invokes its function
synchronously with them as one event (Lambda's SQS record format), and deletes them when it
returns; with `ReportBatchItemFailures`, all but the ones its `batchItemFailures` names. A
message not deleted comes back after the queue's visibility timeout and, once received more than
the RedrivePolicy's `maxReceiveCount` times, SQS itself moves it to the dead-letter queue (moto
does that too). The sandbox, on virtual time, makes a failed message visible again at once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from boxwatch_infra.aws.template import Template

log = logging.getLogger("boxwatch.sqs_source")


@dataclass(frozen=True)
class SqsMapping:
    function: str  # logical id
    queue: str  # logical id of the queue
    batch_size: int = 10
    report_failures: bool = False


def mappings(template: Template) -> list[SqsMapping]:
    """The template's SQS event sources (the queue named by `Fn::GetAtt <Queue>.Arn`)."""
    out = []
    for logical, spec in sorted(template.functions.items()):
        for props in spec.events_of_type("SQS").values():
            queue = props["Queue"]
            if not (isinstance(queue, dict) and "Fn::GetAtt" in queue):
                raise ValueError(f"{logical}: an SQS event's Queue must be !GetAtt <queue>.Arn of this stack")
            target = queue["Fn::GetAtt"]
            name = target[0] if isinstance(target, list) else str(target).split(".")[0]
            out.append(SqsMapping(logical, name, int(template.resolve(props.get("BatchSize", 10))),
                                  "ReportBatchItemFailures" in props.get("FunctionResponseTypes", [])))
    return out


def queue_attributes(template: Template, logical: str, queue_arns: dict[str, str]) -> dict[str, str]:
    """The SQS attributes of a template queue that change delivery (the redrive target by ARN)."""
    import json

    props = template.resources[logical].get("Properties", {})
    attrs: dict[str, str] = {}
    for key in ("VisibilityTimeout", "MessageRetentionPeriod"):
        if key in props:
            attrs[key] = str(template.resolve(props[key]))
    redrive = props.get("RedrivePolicy")
    if redrive:
        target = redrive["deadLetterTargetArn"]["Fn::GetAtt"]
        dlq = target[0] if isinstance(target, list) else str(target).split(".")[0]
        attrs["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": queue_arns[dlq],
                                             "maxReceiveCount": int(redrive["maxReceiveCount"])})
    return attrs


def configure_queues(template: Template, sqs: Any, urls: dict[str, str]) -> None:
    """Give the queues `Template.create_queues` made the attributes that change delivery
    (visibility timeout, redrive to the dead-letter queue), once all of them exist."""
    arns = {logical: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            for logical, url in urls.items()}
    for logical, url in urls.items():
        attrs = queue_attributes(template, logical, arns)
        if attrs:
            sqs.set_queue_attributes(QueueUrl=url, Attributes=attrs)


def lambda_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda hands the function for a batch of received messages."""
    return {"Records": [{
        "messageId": m["MessageId"],
        "receiptHandle": m["ReceiptHandle"],
        "body": m["Body"],
        "attributes": m.get("Attributes", {}),
        "messageAttributes": m.get("MessageAttributes", {}),
        "md5OfBody": m.get("MD5OfBody") or hashlib.md5(m["Body"].encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    } for m in messages]}


def poll_once(sqs: Any, queue_url: str, queue_arn: str, region: str, mapping: SqsMapping,
              invoke: Callable[[dict[str, Any]], Any], wait_s: int = 0, retry_now: bool = False) -> int:
    """One receive-invoke-delete round; the number of messages received (0: the queue looked empty).

    A function that raises leaves the whole batch; one that reports `batchItemFailures` (and the
    mapping allows it) leaves those. `retry_now`: a left message is visible again at once (virtual time)."""
    got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=min(10, mapping.batch_size),
                              WaitTimeSeconds=wait_s, AttributeNames=["All"]).get("Messages", [])
    if not got:
        return 0
    try:
        result = invoke(lambda_event(got, queue_arn, region))
    except Exception as exc:  # Lambda: the batch was not processed, all of it comes back
        log.warning("%s failed on %d message(s): %s", mapping.function, len(got), exc)
        left = {m["MessageId"] for m in got}
    else:
        left = set()
        if mapping.report_failures and isinstance(result, dict):
            left = {str(f.get("itemIdentifier")) for f in result.get("batchItemFailures") or []}
    done = [m for m in got if m["MessageId"] not in left]
    if done:
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)])
    if retry_now:
        for m in got:
            if m["MessageId"] in left:
                sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"],
                                              VisibilityTimeout=0)
    return len(got)
