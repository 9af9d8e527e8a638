"""Per-request DynamoDB/SNS accounting while the sandbox counts calls.

An interceptor on `Sandbox.counter` (which already counts calls per service and operation) that
also records, for each DynamoDB request, the items it evaluated, its read and write capacity
units (`capacity.py`, from the items' sizes as moto holds them before and after the request) and
the partition keys it wrote, stamped with the sandbox's virtual time.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from boxwatch_infra.bench.capacity import item_size, read_units, write_units

Wire = dict[str, dict[str, Any]]


@dataclass
class Write:
    t_ms: int
    key: str  # "<table>:<partition key value>" or "<table>/<index>:<index partition key value>"
    wcu: float


@dataclass
class Totals:
    requests: Counter[str] = field(default_factory=Counter)  # service.Operation -> count
    items_read: int = 0
    rcu: float = 0.0
    wcu: float = 0.0
    writes: list[Write] = field(default_factory=list)
    publish_bytes: list[int] = field(default_factory=list)  # each push: its FCM (GCM) body, or SMS text
    # "<function>:main|pool" -> requests: on the invocation's own thread, or on its read pool
    # (boxwatch.incidents.read_all: those run side by side)
    threads: Counter[str] = field(default_factory=Counter)

    def count(self, service: str) -> int:
        return sum(n for op, n in self.requests.items() if op.startswith(f"{service}."))

    def snapshot(self) -> dict[str, Any]:
        return {"dynamodb_requests": self.count("dynamodb"), "sns_publishes": self.requests["sns.Publish"],
                "items_read": self.items_read, "rcu": round(self.rcu, 2), "wcu": round(self.wcu, 2),
                "operations": dict(sorted(self.requests.items()))}


class Recorder:
    """Attach to a live Sandbox: `with Recorder(sb).recording() as totals: ...`."""

    def __init__(self, sb: Any):
        self.sb = sb
        self.totals = Totals()
        self._mean_size: dict[str, tuple[int, float]] = {}

    # ---------------------------------------------------------------- moto state
    def _backend(self) -> Any:
        from moto.dynamodb.models import dynamodb_backends

        return dynamodb_backends[self.sb.template.account_id][self.sb.template.region]

    def _table(self, name: str) -> Any:
        return self._backend().get_table(name)

    def _stored(self, table_name: str, key: Wire) -> Wire | None:
        """The item as moto holds it now (wire form), without an API call."""
        from moto.dynamodb.models.dynamo_type import DynamoType

        table = self._table(table_name)
        hk = DynamoType(key[table.hash_key_attr])
        if hk not in table.items:
            return None
        rk = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        item = table.get_item(hk, rk)
        return None if item is None else dict(item.to_json()["Attributes"])

    def _key_of(self, table_name: str, item: Wire) -> Wire:
        table = self._table(table_name)
        names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
        return {n: item[n] for n in names}

    def _mean_item_size(self, table_name: str) -> float:
        table = self._table(table_name)
        items = table.all_items()
        cached = self._mean_size.get(table_name)
        if cached is None or cached[0] != len(items):
            sizes = [item_size(i.to_json()["Attributes"]) for i in items]
            cached = (len(items), sum(sizes) / len(sizes) if sizes else 0.0)
            self._mean_size[table_name] = cached
        return cached[1]

    # ---------------------------------------------------------------- writes
    def _record_write(self, table_name: str, before: Wire | None, after: Wire | None, transactional: bool) -> None:
        table = self._table(table_name)
        units = write_units(max(item_size(before), item_size(after)), transactional)
        self.totals.wcu += units
        anyone = after or before
        if anyone is not None:
            pk = next(iter(anyone[table.hash_key_attr].values()))
            self.totals.writes.append(Write(self.sb.now_ms, f"{table_name}:{pk}", units))
        for index in table.global_indexes:
            hash_attr = index.schema_key_attrs[0]
            old = before if before and all(a in before for a in index.schema_key_attrs) else None
            new = after if after and all(a in after for a in index.schema_key_attrs) else None
            if old == new:
                continue  # nothing the index projects changed (or the item is not in it)
            same_key = old is not None and new is not None and all(
                old[a] == new[a] for a in index.schema_key_attrs)
            parts: list[Wire] = [x for x in ((new,) if same_key else (old, new)) if x is not None]
            for part in parts:
                u = write_units(item_size(part))
                self.totals.wcu += u
                pk = next(iter(part[hash_attr].values()))
                self.totals.writes.append(Write(self.sb.now_ms, f"{table_name}/{index.name}:{pk}", u))

    def _writes_of(self, operation: str, params: dict[str, Any]) -> list[tuple[str, Wire, Wire | None, str]]:
        """(table, key, new item or None, kind) of each item a write request touches."""
        out: list[tuple[str, Wire, Wire | None, str]] = []
        if operation == "PutItem":
            out.append((params["TableName"], self._key_of(params["TableName"], params["Item"]), params["Item"], "put"))
        elif operation in ("UpdateItem", "DeleteItem"):
            out.append((params["TableName"], params["Key"], None, operation))
        elif operation == "BatchWriteItem":
            for table_name, requests in params["RequestItems"].items():
                for req in requests:
                    if "PutRequest" in req:
                        item = req["PutRequest"]["Item"]
                        out.append((table_name, self._key_of(table_name, item), item, "put"))
                    else:
                        out.append((table_name, req["DeleteRequest"]["Key"], None, "DeleteItem"))
        elif operation == "TransactWriteItems":
            for entry in params["TransactItems"]:
                (kind, spec), = entry.items()
                if kind == "Put":
                    out.append((spec["TableName"], self._key_of(spec["TableName"], spec["Item"]), spec["Item"], "put"))
                else:
                    out.append((spec["TableName"], spec["Key"], None, kind))
        return out

    def _write(self, operation: str, params: dict[str, Any], call: Callable[[], Any]) -> Any:
        touched = self._writes_of(operation, params)
        before = [self._stored(t, k) for t, k, _, _ in touched]
        transactional = operation == "TransactWriteItems"
        try:
            result = call()
        except ClientError:
            # a failed condition still consumes write capacity for the item as it stands
            for old in before:
                self.totals.wcu += write_units(item_size(old), transactional)
            raise
        for (t, k, new, kind), old in zip(touched, before, strict=True):
            if kind == "ConditionCheck":
                self.totals.wcu += write_units(item_size(old), transactional)
                continue
            after = new if kind == "put" else (None if kind in ("DeleteItem", "Delete") else self._stored(t, k))
            self._record_write(t, old, after, transactional)
        return result

    # ---------------------------------------------------------------- reads
    def _read(self, operation: str, params: dict[str, Any], call: Callable[[], Any]) -> Any:
        result = call()
        consistent = bool(params.get("ConsistentRead")) and not params.get("IndexName")
        if operation == "GetItem":
            item = self._stored(params["TableName"], params["Key"])
            self.totals.items_read += item is not None
            self.totals.rcu += read_units(item_size(item), consistent)
        elif operation == "BatchGetItem":
            for table_name, spec in params["RequestItems"].items():
                for key in spec["Keys"]:
                    item = self._stored(table_name, key)
                    self.totals.items_read += item is not None
                    self.totals.rcu += read_units(item_size(item), bool(spec.get("ConsistentRead")))
        elif operation == "TransactGetItems":
            for entry in params["TransactItems"]:
                item = self._stored(entry["Get"]["TableName"], entry["Get"]["Key"])
                self.totals.items_read += item is not None
                self.totals.rcu += read_units(item_size(item), transactional=True)
        elif operation in ("Query", "Scan"):
            scanned = int(result.get("ScannedCount", result.get("Count", 0)))
            self.totals.items_read += scanned
            trimmed = any(params.get(k) for k in ("FilterExpression", "ProjectionExpression", "AttributesToGet",
                                                    "ScanFilter", "QueryFilter")) or params.get("Select") == "COUNT"
            if trimmed:
                # the response lacks what was evaluated: each evaluated item at the table's mean size
                nbytes = round(scanned * self._mean_item_size(params["TableName"]))
            else:
                nbytes = sum(item_size(i) for i in result.get("Items", []))
            self.totals.rcu += read_units(nbytes, consistent)
        return result

    # ---------------------------------------------------------------- interceptor
    def intercept(self, service: str, operation: str, params: dict[str, Any], call: Callable[[], Any]) -> Any:
        if not self.sb.counter.active:
            return call()
        self.totals.requests[f"{service}.{operation}"] += 1
        pool = threading.current_thread().name.startswith("shard-read")
        self.totals.threads[f"{self.sb.counter.function}:{'pool' if pool else 'main'}"] += 1
        if service == "sns" and operation == "Publish":
            message = str(params.get("Message", ""))
            if params.get("MessageStructure") == "json":
                message = str(json.loads(message).get("GCM", message))  # what FCM is handed
            self.totals.publish_bytes.append(len(message.encode("utf-8")))
            return call()
        if service != "dynamodb":
            return call()
        if operation in ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"):
            return self._write(operation, params, call)
        if operation in ("GetItem", "BatchGetItem", "TransactGetItems", "Query", "Scan"):
            return self._read(operation, params, call)
        return call()

    def recording(self) -> _Recording:
        return _Recording(self)


class _Recording:
    def __init__(self, recorder: Recorder):
        self.recorder = recorder

    def __enter__(self) -> Totals:
        self.recorder.totals = Totals()
        self.recorder.sb.counter.interceptors.append(self.recorder.intercept)
        return self.recorder.totals

    def __exit__(self, *exc: Any) -> None:
        self.recorder.sb.counter.interceptors.remove(self.recorder.intercept)


def iter_writes(totals: Totals, prefix: str = "") -> Iterator[tuple[int, str, float]]:
    for w in totals.writes:
        if w.key.startswith(prefix):
            yield w.t_ms, w.key, w.wcu
