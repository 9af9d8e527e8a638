"""Replay fault injection: a scenario's `faults:` make chosen AWS calls of chosen functions fail.

```yaml
faults:
  - {function: AlarmIngest, service: dynamodb, operation: TransactWriteItems, error: throttle}
  - {function: OfflineSweep, service: sns, operation: Publish, error: 5xx, after: 1, times: 2}
  - {function: Presence, service: dynamodb, error: crash, from_t: 100}
```

`error`: `throttle` (DynamoDB ProvisionedThroughputExceededException, SNS Throttling, ...), `5xx`
(InternalServerError / InternalError), `crash` (the call succeeds, then the invocation dies with
an exception no handler catches: a timeout or OOM). `operation` omitted = any operation of the
service; `after` matching calls go through first (default 0), then `times` calls fail (default 1);
`from_t`/`to_t` arm the fault only in that virtual-time window (seconds, inclusive).

A scenario with faults delivers rule and schedule invocations as Lambda's asynchronous invokes
(`Sandbox.invoke_async`: 1 + MaximumRetryAttempts tries, the retries at once, after the function
timeout has passed for powertools' in-progress records). A fault never fires on the last attempt
of an invocation, so a retry always clears it: a fault that exhausts every retry is a lost event
by AWS's own rules (the on-failure destination), not something a scenario should test this way.
API calls (`power_off`) are synchronous and never faulted. The report gains `faults`: each
fault with how often it `fired`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from boxwatch_infra.replay.run import Plugin, Run
from boxwatch_infra.replay.scenario import ScenarioError

ERRORS: dict[str, dict[str, tuple[str, int]]] = {
    "throttle": {"dynamodb": ("ProvisionedThroughputExceededException", 400), "sns": ("Throttling", 400),
                 "iot-data": ("ThrottlingException", 429), "": ("ThrottlingException", 400)},
    "5xx": {"dynamodb": ("InternalServerError", 500), "sns": ("InternalError", 500),
            "iot-data": ("InternalFailureException", 500), "": ("InternalFailure", 500)},
}
KINDS = (*ERRORS, "crash")
FIELDS = {"function", "service", "operation", "error", "after", "times", "from_t", "to_t"}


class InjectedCrash(BaseException):
    """The invocation dies after the call (no `except Exception` sees it), as on a timeout."""


@dataclass
class Fault:
    function: str  # logical id
    service: str
    error: str
    operation: str | None = None
    after: int = 0
    times: int = 1
    from_t: float | None = None
    to_t: float | None = None
    seen: int = 0  # matching calls so far
    fired: int = 0

    def matches(self, function: str | None, service: str, operation: str, t: float) -> bool:
        return (function == self.function and service == self.service
                and (self.operation is None or operation == self.operation)
                and (self.from_t is None or t >= self.from_t) and (self.to_t is None or t <= self.to_t))

    def report(self) -> dict[str, Any]:
        out = {"function": self.function, "service": self.service, "operation": self.operation,
               "error": self.error, "after": self.after, "times": self.times, "fired": self.fired}
        return {k: v for k, v in out.items() if v is not None}


def parse(replay: Run, raw: dict[str, Any]) -> Fault:
    unknown = set(raw) - FIELDS
    if unknown:
        raise ScenarioError(f"fault has unknown fields {sorted(unknown)}")
    try:
        function = replay.sb.template.function(str(raw["function"])).logical_id
    except KeyError as exc:
        raise ScenarioError(f"fault needs a template function: {exc}") from None
    error = str(raw.get("error", "throttle"))
    if error not in KINDS:
        raise ScenarioError(f"fault error must be one of {KINDS}, got {error!r}")
    if not raw.get("service"):
        raise ScenarioError("fault needs a service (dynamodb, sns, iot-data, sqs)")
    after, times = raw.get("after", 0), raw.get("times", 1)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (after, times)):
        raise ScenarioError("fault after/times must be non-negative integers")
    return Fault(function, str(raw["service"]), error, raw.get("operation"), after, times,
                 None if raw.get("from_t") is None else float(raw["from_t"]),
                 None if raw.get("to_t") is None else float(raw["to_t"]))


@dataclass
class Injector:
    replay: Run
    faults: list[Fault] = field(default_factory=list)

    def __call__(self, service: str, operation: str, params: dict[str, Any], call: Any) -> Any:
        sb = self.replay.sb
        if sb.attempt is None or sb.counter.function is None:
            return call()  # set-up, a direct invoke, or the runtime's own calls between attempts
        attempt, retries = sb.attempt
        for fault in self.faults:
            if not fault.matches(sb.counter.function, service, operation, self.replay.t):
                continue
            fault.seen += 1
            if fault.seen <= fault.after or fault.fired >= fault.times or attempt >= retries:
                continue
            fault.fired += 1
            if fault.error == "crash":
                call()
                raise InjectedCrash(f"injected crash after {service}.{operation} in {fault.function}")
            code, status = ERRORS[fault.error].get(service, ERRORS[fault.error][""])
            response: Any = {"Error": {"Code": code, "Message": "injected"},
                             "ResponseMetadata": {"HTTPStatusCode": status}}
            raise ClientError(response, operation)
        return call()


def expire_in_progress(replay: Run, function: str, event: Any) -> None:
    """Before a retry: the function timeout has passed, so an in-progress idempotency record left
    by a crashed attempt may be taken over (Lambda's retries come minutes later)."""
    sb = replay.sb
    table = sb.tables.get("IdempotencyTable")
    if table is None:
        return
    ddb = sb.client("dynamodb")
    for item in ddb.scan(TableName=table, ProjectionExpression="id, #s",
                         ExpressionAttributeNames={"#s": "status"}).get("Items", []):
        if item.get("status", {}).get("S") == "INPROGRESS":
            ddb.update_item(TableName=table, Key={"id": item["id"]},
                            UpdateExpression="SET in_progress_expiration = :zero",
                            ExpressionAttributeValues={":zero": {"N": "0"}})


class Faults(Plugin):
    """Arms the scenario's faults at set-up (listed before Network: its t=0 connects are asynchronous
    invokes a fault may hit); reports how often each fired."""

    def __init__(self, run: Run) -> None:
        super().__init__(run)
        self.injector: Injector | None = None

    def init(self) -> None:
        if self.run.scenario.faults:
            self.run.async_invokes = True

    def setup(self) -> None:
        if not self.run.scenario.faults:
            return
        self.injector = Injector(self.run, [parse(self.run, raw) for raw in self.run.scenario.faults])
        self.run.sb.counter.interceptors.insert(0, self.injector)
        self.run.sb.before_retry.append(self.before_retry)

    def before_retry(self, function: str, event: Any) -> None:
        expire_in_progress(self.run, function, event)

    def finish(self) -> None:
        if self.injector is None:
            return
        self.run.sb.counter.interceptors.remove(self.injector)  # a reused sandbox runs the next scenario clean
        self.run.sb.before_retry.remove(self.before_retry)
        self.run.extra["faults"] = [f.report() for f in self.injector.faults]
