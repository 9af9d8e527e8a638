"""How AWS delivers to functions when something fails, for both emulators.

- An IoT rule's Lambda action, and an EventBridge schedule, is an *asynchronous* invoke: Lambda
  tries 1 + MaximumRetryAttempts times (the function's `EventInvokeConfig`), then sends the event
  and its last error to the OnFailure destination (`AsyncFailureQueue`) in Lambda's destination
  record format.
- When a rule cannot deliver (its SQL cannot evaluate the payload, the action fails), IoT Core
  runs the rule's ErrorAction: the original message goes to `IotRuleDeadLetterQueue` in IoT's
  error-action format (base64OriginalPayload, topic, clientId, failures).

Real retries come 1 and 2 minutes apart; what happens in between is the caller's: the sandbox runs
its `before_retry` hooks at once (virtual time), the local cloud sleeps a little.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from boxwatch_infra.aws.template import Template

ASYNC_DEFAULT_RETRIES = 2  # Lambda's default for asynchronous invocations


def async_config(template: Template, logical: str) -> tuple[int, str | None]:
    """(MaximumRetryAttempts, logical id of the OnFailure SQS queue) of a function: from the
    SAM function's `EventInvokeConfig` (Globals included), or, in a translated template, from the
    `AWS::Lambda::EventInvokeConfig` SAM made of it."""
    resources = template.resources
    cfg: dict[str, Any] | None = None
    for res in resources.values():
        props = res.get("Properties", {})
        if res.get("Type") == "AWS::Lambda::EventInvokeConfig" and props.get("FunctionName") == {"Ref": logical}:
            cfg = props
    if cfg is None and resources.get(logical, {}).get("Type") == "AWS::Serverless::Function":
        globals_cfg = template.doc.get("Globals", {}).get("Function", {}).get("EventInvokeConfig", {})
        cfg = {**globals_cfg, **resources[logical].get("Properties", {}).get("EventInvokeConfig", {})}
    if cfg is None:
        return ASYNC_DEFAULT_RETRIES, None
    retries = int(template.resolve(cfg.get("MaximumRetryAttempts", ASYNC_DEFAULT_RETRIES)))
    dest = cfg.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
    queue = dest["Fn::GetAtt"][0] if isinstance(dest, dict) and "Fn::GetAtt" in dest else None
    return retries, queue


def with_retries(attempt: Callable[[int], Any], retries: int,
                 before_retry: Callable[[int], None] = lambda attempt: None,
                 on_error: Callable[[int, BaseException], None] = lambda attempt, exc: None,
                 ) -> tuple[Any, BaseException | None]:
    """Run `attempt(0)`, then `attempt(1..retries)` while they fail: (result, None) from the first
    that succeeds, else (None, the last error). A crash of any kind fails an attempt, as in Lambda."""
    last: BaseException | None = None
    for n in range(retries + 1):
        if n:
            before_retry(n)
        try:
            return attempt(n), None
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:
            last = exc
            on_error(n, exc)
    assert last is not None
    return None, last


def failure_record(template: Template, logical: str, event: Any, error: BaseException, attempts: int
                   ) -> dict[str, Any]:
    """What Lambda sends to an OnFailure destination after the last retry."""
    return {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"{template.attribute(logical, 'Arn')}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorType": type(error).__name__, "errorMessage": str(error)},
    }


def send_failure(sqs: Any, queue_url: str, template: Template, logical: str, event: Any, error: BaseException,
                 attempts: int) -> None:
    """Deliver the failure record to the OnFailure queue."""
    body = json.dumps(failure_record(template, logical, event, error, attempts), default=str)
    sqs.send_message(QueueUrl=queue_url, MessageBody=body)


def rule_error_message(rule_name: str, topic: str, client_id: str, raw: bytes, failed_resource: str,
                       error: str) -> dict[str, Any]:
    """What an IoT rule's SQS error action puts on the queue (UseBase64: false)."""
    return {
        "ruleName": rule_name,
        "topic": topic,
        "cloudwatchTraceId": str(uuid.uuid4()),
        "clientId": client_id,
        "base64OriginalPayload": base64.b64encode(raw).decode(),
        "failures": [{"failedAction": "LambdaAction", "failedResource": failed_resource, "errorMessage": error}],
    }


def send_rule_error(sqs: Any, queue_url: str, rule_name: str, topic: str, client_id: str, raw: bytes,
                    failed_resource: str, error: str) -> None:
    """Run a rule's SQS ErrorAction."""
    message = rule_error_message(rule_name, topic, client_id, raw, failed_resource, error)
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))
