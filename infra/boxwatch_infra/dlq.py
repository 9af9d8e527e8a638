"""Dead letters back through the handlers, once their cause is fixed (`boxwatch dlq replay`).

Three queues, one per way an input can fail (template.yaml):

- `rule`     IotRuleDeadLetterQueue: IoT rule error actions (base64OriginalPayload, topic, clientId).
             The message is run through the template's rules again, as IoT Core would.
- `async`    AsyncFailureQueue: Lambda on-failure records after the retries (requestPayload, functionArn).
- `rejected` RejectedInputQueue: inputs a handler refused (function, event, error).

Each dead letter is redelivered to its function and deleted only when the function returned;
a failure leaves it in the queue. Idempotency (alarm records, powertools records) makes a
redelivery of something already processed a no-op, so a replay never duplicates a push.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from boxwatch_infra.aws.iot_rules import MessageContext, Rule, parse_payload, rules_from_template
from boxwatch_infra.aws.template import Template

QUEUES = {"rule": "IotRuleDeadLetterQueue", "async": "AsyncFailureQueue", "rejected": "RejectedInputQueue"}

Invoker = Callable[[str, dict[str, Any]], Any]  # (function logical id, event) -> result; raises on failure


@dataclass
class Redelivery:
    function: str  # logical id
    event: dict[str, Any]


@dataclass
class ReplayReport:
    redelivered: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"redelivered": self.redelivered, "failed": self.failed, "unreadable": self.unreadable}


def function_logical_id(template: Template, name_or_arn: str, physical: dict[str, str] | None = None) -> str:
    """A function's logical id from its name or ARN (…:function:NAME[:qualifier])."""
    name = name_or_arn.split(":function:", 1)[1].split(":")[0] if ":function:" in name_or_arn else name_or_arn
    for logical in template.functions:
        if name in (logical, template.physical_name(logical), (physical or {}).get(logical)):
            return logical
    raise KeyError(f"no template function is called {name!r}")


def redeliveries(kind: str, body: dict[str, Any], template: Template, rules: list[Rule], sent_at_ms: int,
                 physical: dict[str, str] | None = None) -> list[Redelivery]:
    """What to deliver again for one dead letter."""
    if kind == "rule":
        raw = base64.b64decode(body["base64OriginalPayload"])
        # IoT's error message has no timestamp: the message's SentTimestamp is the closest to timestamp()
        ctx = MessageContext(topic=body["topic"], payload=parse_payload(raw), client_id=body.get("clientId", ""),
                             now_ms=sent_at_ms)
        names = {body.get("ruleName")}
        matching = [r for r in rules if r.name in names or (physical or {}).get(r.name) in names] or rules
        out = []
        for rule in matching:
            event = rule.apply(ctx)  # raises ValueError if the payload still cannot be evaluated
            if event is not None:
                out.append(Redelivery(rule.function, event))
        return out
    if kind == "async":
        fn = function_logical_id(template, body["requestContext"]["functionArn"], physical)
        return [Redelivery(fn, body["requestPayload"])]
    if kind == "rejected":
        if body.get("event") is None:
            raise ValueError("the refused input was too large to keep; nothing to replay")
        return [Redelivery(function_logical_id(template, body["function"], physical), body["event"])]
    raise ValueError(f"unknown dead-letter queue kind {kind!r}")


def replay(sqs: Any, queue_urls: dict[str, str], invoke: Invoker, template: Template | None = None,
           kinds: list[str] | None = None, dry_run: bool = False, physical: dict[str, str] | None = None
           ) -> ReplayReport:
    """Redeliver every message waiting now in the chosen queues (one pass: messages that a
    redelivery dead-letters again are left for the next run)."""
    template = template or Template()
    rules = rules_from_template(template)
    report = ReplayReport()
    started_ms = int(time.time() * 1000)
    for kind in kinds or list(QUEUES):
        url = queue_urls[kind]
        seen: set[str] = set()
        while True:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300,
                                      AttributeNames=["SentTimestamp"])
            messages: list[dict[str, Any]] = []
            later: list[dict[str, Any]] = []
            for m in got.get("Messages", []):
                # dead-lettered again during this run, or already handled: for the next run
                again = m["MessageId"] in seen or int(m["Attributes"]["SentTimestamp"]) >= started_ms
                (later if again else messages).append(m)
            for m in later:
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
            if not messages:
                break
            for m in messages:
                seen.add(m["MessageId"])
                entry: dict[str, Any] = {"queue": kind, "message_id": m["MessageId"]}
                try:
                    body = json.loads(m["Body"])
                    todo = redeliveries(kind, body, template, rules, int(m["Attributes"]["SentTimestamp"]), physical)
                except (ValueError, KeyError, TypeError) as exc:
                    report.unreadable.append({**entry, "error": f"{type(exc).__name__}: {exc}"})
                    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
                    continue
                if dry_run:
                    report.redelivered.extend({**entry, "function": r.function, "dry_run": True} for r in todo)
                    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
                    continue
                try:
                    results = [invoke(r.function, r.event) for r in todo]
                except Exception as exc:  # the cause is not fixed yet: keep the dead letter
                    report.failed.append({**entry, "error": f"{type(exc).__name__}: {exc}"})
                    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
                    continue
                for r, result in zip(todo, results, strict=True):
                    report.redelivered.append({**entry, "function": r.function, "result": result})
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return report


def sandbox_invoker(sb: Any) -> Invoker:
    """Redeliver through an in-process Sandbox (synchronously, errors raise)."""
    return lambda function, event: sb.invoke(function, event)


def lambda_invoker(lambda_client: Any, physical: dict[str, str], template: Template) -> Invoker:
    """Redeliver to the deployed functions (RequestResponse, so that a failure keeps the letter)."""

    def invoke(function: str, event: dict[str, Any]) -> Any:
        name = physical.get(function) or template.physical_name(function)
        out = lambda_client.invoke(FunctionName=name, InvocationType="RequestResponse",
                                   Payload=json.dumps(event).encode())
        payload = json.loads(out["Payload"].read() or b"null")
        if out.get("FunctionError"):
            raise RuntimeError(f"{name}: {payload}")
        return payload

    return invoke


def stack_physical_ids(cloudformation: Any, stack: str) -> dict[str, str]:
    """Logical -> physical id of every resource of a deployed stack (queue URLs, function names)."""
    out: dict[str, str] = {}
    for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack):
        for res in page["StackResourceSummaries"]:
            out[res["LogicalResourceId"]] = res["PhysicalResourceId"]
    return out
