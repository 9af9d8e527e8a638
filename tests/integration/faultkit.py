"""Fault injection for the sandbox and a small alarm-path world, shared by the reliability suites.

Faults are injected at the botocore client boundary (the sandbox's call interceptors), under
the SDK's own retries: an injected error is one that outlasted them.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from boxwatch.registry import BindingSpec, BoxSpec, bind, import_boxes
from boxwatch_infra.sandbox import Delivery, Sandbox, decode_push

T0 = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)


class Crash(BaseException):
    """A hard crash (timeout, OOM, killed container): no `except Exception` sees it."""


@dataclass
class Fault:
    service: str
    operation: str
    times: int
    make: Callable[[str], BaseException]
    when: Callable[[dict[str, Any]], bool] = lambda params: True
    fired: int = 0


@dataclass
class Faults:
    """An interceptor: the next `times` calls matching a fault fail with its exception."""

    plans: list[Fault] = field(default_factory=list)

    def client_error(self, service: str, operation: str, code: str, status: int = 400, times: int = 1,
                     when: Callable[[dict[str, Any]], bool] = lambda params: True) -> Fault:
        def make(op: str) -> BaseException:
            response: Any = {"Error": {"Code": code, "Message": "injected"},
                             "ResponseMetadata": {"HTTPStatusCode": status}}
            return ClientError(response, op)
        fault = Fault(service, operation, times, make, when)
        self.plans.append(fault)
        return fault

    def crash(self, service: str, operation: str, times: int = 1, exc: type[BaseException] = Crash,
              when: Callable[[dict[str, Any]], bool] = lambda params: True) -> Fault:
        fault = Fault(service, operation, times, lambda op: exc(f"injected crash before {op}"), when)
        self.plans.append(fault)
        return fault

    def __call__(self, service: str, operation: str, params: dict[str, Any], call: Callable[[], Any]) -> Any:
        for fault in self.plans:
            if (fault.service, fault.operation) == (service, operation) and fault.fired < fault.times \
                    and fault.when(params):
                fault.fired += 1
                raise fault.make(operation)
        return call()


@contextlib.contextmanager
def injected(sb: Sandbox) -> Iterator[Faults]:
    faults = Faults()
    sb.counter.interceptors.insert(0, faults)
    try:
        yield faults
    finally:
        sb.counter.interceptors.remove(faults)


def expire_in_progress(sb: Sandbox, *_: Any) -> None:
    """Time passes beyond the function timeout: IN_PROGRESS idempotency records may be taken over
    (Lambda's first retry comes after ~1 min, the timeout is 15 s)."""
    ddb = sb.client("dynamodb")
    table = sb.tables["IdempotencyTable"]
    for item in ddb.scan(TableName=table)["Items"]:
        if item.get("status", {}).get("S") == "INPROGRESS":
            ddb.update_item(TableName=table, Key={"id": item["id"]},
                            UpdateExpression="SET in_progress_expiration = :zero",
                            ExpressionAttributeValues={":zero": {"N": "0"}})


@dataclass
class AlarmWorld:
    """Boxes BX-1 and BX-2 (300 m apart), clients c0..cN-1 bound to BX-1, c9 bound to BX-2."""

    sb: Sandbox
    endpoints: dict[str, str]
    clients: list[str]

    def alarm(self, box: str = "BX-1", seq: int = 1, t_s: float = 0.0, alarm_at_s: float | None = None,
              **extra: Any) -> list[Delivery]:
        """Box publishes alarm `seq` at t_s; alarm_at_s (default t_s) is when the detector raised it,
        so a redelivery passes the first delivery's alarm_at_s."""
        now = T0 + round(t_s * 1000)
        alarm_time = T0 + round((t_s if alarm_at_s is None else alarm_at_s) * 1000)
        payload = {"v": 1, "seq": seq, "cause": "overtemp", "alarm_time": alarm_time, "value": 92.5,
                   "threshold": 85, **extra}
        return self.sb.publish_mqtt(f"boxwatch/boxes/{box}/alarms", payload, client_id=box, now_ms=now)

    def pushes(self, kind: str | None = None) -> Counter[tuple[str, int]]:
        """(client, seq) -> how many pushes of `kind` it received."""
        by_arn = {arn: cid for cid, arn in self.endpoints.items()}
        out: Counter[tuple[str, int]] = Counter()
        for arn, messages in self.sb.pushed_messages().items():
            for message in messages:
                data = decode_push(message)
                if kind is None or data["kind"] == kind:
                    out[(by_arn[arn], int(data["seq"]))] += 1
        return out

    def queue(self, logical: str) -> list[dict[str, Any]]:
        """Messages waiting in a queue (left visible)."""
        sqs = self.sb.client("sqs")
        out: list[dict[str, Any]] = []
        while True:
            got = sqs.receive_message(QueueUrl=self.sb.queues[logical], MaxNumberOfMessages=10, VisibilityTimeout=0)
            msgs = got.get("Messages", [])
            new = [m for m in msgs if m["MessageId"] not in {o["MessageId"] for o in out}]
            if not new:
                return out
            out.extend(json.loads(m["Body"]) | {"MessageId": m["MessageId"]} for m in new)

    def alarm_records(self) -> list[dict[str, Any]]:
        ddb = self.sb.client("dynamodb")
        items = ddb.scan(TableName=self.sb.tables["AlarmsTable"])["Items"]
        return [i for i in items if i["pk"]["S"].startswith("BOX#") and i["sk"]["S"].startswith("SEQ#")]


def alarm_world(sb: Sandbox, n_clients: int = 3) -> AlarmWorld:
    boxes = [BoxSpec(id="BX-1", name="No.1 building", address="1 Main St", lat=39.98, lng=116.31),
             BoxSpec(id="BX-2", name="No.2 building", address="2 Main St", lat=39.9827, lng=116.31)]
    list(import_boxes(boxes, sb.settings))
    sb.create_things([b.id for b in boxes])
    clients = [f"c{i}" for i in range(n_clients)]
    endpoints = sb.create_push_endpoints([*clients, "c9"])
    for cid in clients:
        bind(BindingSpec(client_id=cid, box_id="BX-1", target=endpoints[cid], locale="en"))
    bind(BindingSpec(client_id="c9", box_id="BX-2", target=endpoints["c9"], locale="en"))
    return AlarmWorld(sb, endpoints, clients)
