"""How AWS delivers to functions when something fails, modelled for the sandbox.

- An IoT rule's Lambda action is an *asynchronous* invoke: Lambda tries 1 + MaximumRetryAttempts
  times (template `EventInvokeConfig`), then sends the event and its last error to the OnFailure
  destination (`AsyncFailureQueue`) in Lambda's destination record format.
- When a rule cannot deliver (its SQL cannot evaluate the payload, the action fails), IoT Core
  runs the rule's ErrorAction: the original message goes to `IotRuleDeadLetterQueue` in IoT's
  error-action format (base64OriginalPayload, topic, clientId, failures).

Real retries come 1 and 2 minutes apart; here they come at once, and `Sandbox.before_retry`
hooks let a test say what happens in between (a fault clears, a timeout passes).
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from boxwatch_infra.iot_rules import Rule
    from boxwatch_infra.sandbox import Sandbox
    from boxwatch_infra.template import Template

ASYNC_DEFAULT_RETRIES = 2  # Lambda's default for asynchronous invocations


def async_config(template: Template, function: str) -> tuple[int, str | None]:
    """(MaximumRetryAttempts, logical id of the OnFailure SQS queue) of a function, Globals included."""
    spec = template.function(function)
    props = template.resources[spec.logical_id].get("Properties", {})
    globals_cfg = template.doc.get("Globals", {}).get("Function", {}).get("EventInvokeConfig", {})
    cfg = {**globals_cfg, **props.get("EventInvokeConfig", {})}
    retries = int(template.resolve(cfg.get("MaximumRetryAttempts", ASYNC_DEFAULT_RETRIES)))
    dest = cfg.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
    queue = dest["Fn::GetAtt"][0] if isinstance(dest, dict) and "Fn::GetAtt" in dest else None
    return retries, queue


def failure_record(
    template: Template, function: str, event: Any, error: BaseException, attempts: int
) -> dict[str, Any]:
    """What Lambda sends to an OnFailure destination after the last retry."""
    logical = template.function(function).logical_id
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


def invoke_async(sb: Sandbox, function: str, event: Any) -> tuple[Any, str | None]:
    """Lambda's asynchronous invocation with retries and the on-failure destination: (result, error)."""
    retries, queue = async_config(sb.template, function)
    last: BaseException | None = None
    for attempt in range(retries + 1):
        if attempt:
            for hook in sb.before_retry:
                hook(function, event)
        outer, sb.attempt = sb.attempt, (attempt, retries)  # fault injection spares the last attempt
        try:
            return sb.invoke(function, event), None
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # a crash of any kind fails the invocation, as in Lambda
            last = exc
        finally:
            sb.attempt = outer
    assert last is not None
    if queue is not None:
        body = json.dumps(failure_record(sb.template, function, event, last, retries + 1), default=str)
        sb.client("sqs").send_message(QueueUrl=sb.queues[queue], MessageBody=body)
    return None, f"{type(last).__name__}: {last}"


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


def rule_error_action(sb: Sandbox, rule: Rule, topic: str, client_id: str, raw: bytes, error: str) -> bool:
    """Run the rule's ErrorAction; False when the rule has none (the message is lost, as on AWS)."""
    if rule.error_queue is None:
        return False
    message = rule_error_message(rule.name, topic, client_id, raw, sb.template.physical_name(rule.function), error)
    sb.client("sqs").send_message(QueueUrl=sb.queues[rule.error_queue], MessageBody=json.dumps(message))
    return True
