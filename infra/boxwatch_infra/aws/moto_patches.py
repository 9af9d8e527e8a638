"""Speed-ups for moto that keep its answers: same responses, same results, less CPU.

moto answers a base-table Query by sorting every item of the table and keeping the partition's,
and backs up each table a TransactWriteItems touches with a deep copy of the whole table (once
per item). Both make an alarm's cost in moto grow with everything stored before it, which
DynamoDB's does not. While `faster_moto()` is active (the benchmarks, in-process):

- a base-table Query sees only its partition's items (sorted as moto sorts them): same results;
- a GSI or LSI Query sees only the items with its index hash key (a per-index map, rebuilt after
  any put, delete or update of the table), and with `BETWEEN` on the index sort key only those
  in range (bisected on a sorted copy, by the same Decimal/str values moto compares): same
  results, same ScannedCount;
- a TransactWriteItems takes no backup copy of the tables it touches, so a cancelled transaction
  is not rolled back in moto. The benchmarks send no duplicates and make no conflicting writes,
  so none is cancelled; the storm counts failed deliveries and reports them.
- a DynamoDB data-plane result is dumped as JSON, not walked through botocore's shapes
  (`fast_dynamodb_responses`, the same body), and a handler's method list is listed once.

moto_server in the local cloud gets the same queries and, instead of the backup copy, a rollback
of just the items a transaction names (`scalable_dynamodb`), plus `speed_up_moto_server` and
`fast_dynamodb_responses` (its serializer bypassed for DynamoDB data-plane results).

Every sandbox and moto_server also check an item's size in one pass (`item_size_in_one_pass`:
moto re-sums the whole item for each attribute it sets).

Nothing here changes which requests the handlers make or what they read.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import functools
import inspect
import json
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

# DynamoDB's item size limit as moto enforces it (~405 KB: moto measured 409-410 KB, kept between)
ITEM_SIZE_LIMIT = 405_000


@contextlib.contextmanager
def item_size_in_one_pass() -> Iterator[None]:
    """moto checks an item's size on every attribute it sets by summing all attributes set so far,
    so building an item of n attributes costs n² (a 40-attribute box item: ~800 size calls per
    write). Here each set sums once and a new item is checked once, after its attributes: the same
    limit, the same ItemSizeTooLarge, linear cost. Entered by every sandbox and by moto_server."""
    from moto.dynamodb.models import dynamo_type as dt

    def size_of(key: str, value: Any) -> int:
        return dt.bytesize(key) + (value.size() if type(value) is dt.DynamoType else dt.bytesize(str(value)))

    def setitem(self: Any, key: str, value: Any) -> None:
        if sum(size_of(k, v) for k, v in self.items()) + size_of(key, value) > ITEM_SIZE_LIMIT:
            raise dt.ItemSizeTooLarge
        dict.__setitem__(self, key, value)

    def item_init(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
        self.hash_key = hash_key
        self.range_key = range_key
        typed = {k: dt.DynamoType(v) for k, v in attrs.items()}
        if sum(size_of(k, v) for k, v in typed.items()) > ITEM_SIZE_LIMIT:
            raise dt.ItemSizeTooLarge
        self.attrs = dt.LimitedSizeDict()
        dict.update(self.attrs, typed)

    with mock.patch.object(dt.LimitedSizeDict, "__setitem__", setitem), \
            mock.patch.object(dt.Item, "__init__", item_init):
        yield


@contextlib.contextmanager
def faster_moto() -> Iterator[None]:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    original_query = Table.query
    original_all_items = Table.all_items
    local = threading.local()
    signature = inspect.signature(original_query)

    def index_partition(self: Any, index_name: str, conditions: list[tuple[str, Any]]) -> list[Any] | None:
        if len(conditions) != 1:
            return None
        attr, value = conditions[0]
        cache = self.__dict__.setdefault("_bench_gsi", {})
        if (index_name, attr) not in cache:
            by_value: dict[Any, list[Any]] = defaultdict(list)
            for part in self.items.values():
                for item in part.values() if self.range_key_attr else [part]:
                    v = item.attrs.get(attr)
                    if v is not None:
                        by_value[v].append(item)
            cache[(index_name, attr)] = by_value
        return list(cache[(index_name, attr)].get(value, []))

    def index_range(self: Any, index_name: str, attr: str, value: Any, range_attr: str,
                    lo: Any, hi: Any) -> list[Any]:
        """The items of one index partition with lo <= range_attr <= hi (moto's BETWEEN)."""
        cache = self.__dict__.setdefault("_bench_gsi", {})
        key = (index_name, attr, range_attr)
        if key not in cache:
            by_value: dict[Any, list[Any]] = defaultdict(list)
            for part in self.items.values():
                for item in part.values() if self.range_key_attr else [part]:
                    v, r = item.attrs.get(attr), item.attrs.get(range_attr)
                    if v is not None and r is not None:
                        by_value[v].append((r.cast_value, item))
            sorted_by_value = {}
            for v, rows in by_value.items():
                rows.sort(key=lambda row: row[0])
                sorted_by_value[v] = ([r for r, _ in rows], [i for _, i in rows])
            cache[key] = sorted_by_value
        keys, items = cache[key].get(value, ([], []))
        return items[bisect.bisect_left(keys, lo.cast_value):bisect.bisect_right(keys, hi.cast_value)]

    def index_range_attr(self: Any, index_name: str) -> str | None:
        for index in self.all_indexes():
            if index.name == index_name:
                ranges = [k["AttributeName"] for k in index.schema if k["KeyType"] == "RANGE"]
                return ranges[0] if len(ranges) == 1 else None
        return None

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind(self, hash_key, *args, **kwargs).arguments
        index_name = arguments.get("index_name")
        partition: list[Any] | None
        if index_name:
            conditions = arguments.get("hash_key_conditions") or []
            range_attr = index_range_attr(self, index_name)
            objs = arguments.get("range_objs") or []
            if (arguments.get("range_comparison") == "BETWEEN" and range_attr and len(conditions) == 1
                    and len(objs) == 2 and len(arguments.get("range_key_conditions") or [None]) == 1):
                attr, value = conditions[0]
                partition = index_range(self, index_name, attr, value, range_attr, objs[0], objs[1])
            else:
                partition = index_partition(self, index_name, conditions)
        elif hash_key is not None and self.range_key_attr:
            partition = list(self.items.get(hash_key, {}).values())
        else:
            partition = None
        if partition is None:
            return original_query(self, hash_key, *args, **kwargs)
        # per thread: moto_server answers requests on many threads, and a query of one partition
        # must never see (or remove) another query's partition on the same table
        scoped = local.__dict__.setdefault("partitions", {})
        scoped[id(self)] = partition
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            scoped.pop(id(self), None)

    def all_items(self: Any) -> Any:
        partition = local.__dict__.get("partitions", {}).get(id(self))
        if partition is None:
            return original_all_items(self)
        return sorted(partition, key=lambda x: (x.hash_key, x.range_key or x.hash_key))

    def backup(self: Any, memo: dict[int, Any]) -> Any:
        return self  # no rollback copy: see the module docstring

    def invalidating(name: str) -> Any:
        original = getattr(Table, name)

        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            self.__dict__.pop("_bench_gsi", None)
            return original(self, *args, **kwargs)

        return mock.patch.object(Table, name, method)

    original_update = DynamoDBBackend.update_item

    def update_item(self: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
        self.get_table(table_name).__dict__.pop("_bench_gsi", None)  # updates change items in place
        return original_update(self, table_name, *args, **kwargs)

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(Table, "query", query))
        stack.enter_context(mock.patch.object(Table, "all_items", all_items))
        stack.enter_context(mock.patch.object(Table, "__deepcopy__", backup, create=True))
        stack.enter_context(invalidating("put_item"))
        stack.enter_context(invalidating("delete_item"))
        stack.enter_context(mock.patch.object(DynamoDBBackend, "update_item", update_item))
        # moto_server's two speed-ups that keep answers, for the time of the context
        from moto.dynamodb.responses import DynamoHandler

        stack.callback(setattr, DynamoHandler, "serialized", fast_dynamodb_responses())
        import moto.core.responses as moto_responses

        stack.enter_context(mock.patch.object(moto_responses, "method_names_from_class",
                                              functools.cache(moto_responses.method_names_from_class)))
        yield


# patches for the life of a moto_server process (a dropped ExitStack would undo them)
_KEEP = contextlib.ExitStack()


def speed_up_moto_server() -> None:
    """Things that cost moto_server most of its time under concurrent load (measured by stack
    sampling): werkzeug logs every request at INFO (threads queue on the logging lock), and the
    dispatcher lists moto's package directory on disk for every request, under a global lock."""
    import logging

    import moto.backends
    import moto.core.responses

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    modules = tuple(moto.backends.list_of_moto_modules())
    moto.backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]
    # and every request lists its handler class's methods with inspect.getmembers (5 % of the CPU)
    moto.core.responses.method_names_from_class = functools.cache(  # type: ignore[attr-defined]
        moto.core.responses.method_names_from_class)  # type: ignore[attr-defined]


def scalable_dynamodb() -> None:
    """moto's DynamoDB costs grow with everything stored: a Query sorts every item of the table,
    a TransactWriteItems deep-copies every table it touches (for its rollback). An alarm then
    costs moto 20+ ms more per thousand stored, and the local cloud falls behind any steady load.

    - Query: the partition-local lookups of `faster_moto` (same results);
    - TransactWriteItems: instead of copying whole tables, the items the transaction names are
      copied before it runs and put back if moto cancels it: the same all-or-nothing outcome,
      under one lock so concurrent transactions cannot interleave with a rollback.
    """
    import copy

    from moto.dynamodb.models import DynamoDBBackend

    _KEEP.enter_context(faster_moto())  # for the life of the process (a dropped stack would undo it)
    _KEEP.enter_context(item_size_in_one_pass())
    original = DynamoDBBackend.transact_write_items
    lock = threading.RLock()

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        with lock:
            saved: list[tuple[str, dict[str, Any], Any]] = []
            try:
                for entry in transact_items:
                    _, op = next(iter(entry.items()))
                    table = self.get_table(op["TableName"])
                    if "Item" in op:
                        key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
                        if table.range_key_attr is not None:
                            key[table.range_key_attr] = op["Item"][table.range_key_attr]
                    else:
                        key = op["Key"]
                    current = self.get_item(op["TableName"], key)
                    saved.append((op["TableName"], key, copy.deepcopy(current.to_json()["Attributes"])
                                  if current is not None else None))
            except Exception:  # malformed: moto's own validation answers it
                saved = []
            try:
                original(self, transact_items)
            except Exception:
                for table_name, key, attrs in reversed(saved):
                    if attrs is None:
                        with contextlib.suppress(Exception):
                            self.delete_item(table_name, key)
                    else:
                        self.put_item(table_name, attrs)
                raise

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


# DynamoDB's data plane: results are already wire-format dicts (moto's dynamo_to_dict)
DATA_PLANE = frozenset({"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem",
                        "BatchWriteItem", "TransactGetItems", "TransactWriteItems"})


def _wire_json(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()  # B and BS values, as the JSON protocol sends them
    raise TypeError(f"not JSON: {type(value).__name__}")


def fast_dynamodb_responses() -> Callable[[Any, Any], Any]:
    """moto 5.2 serialises every response by walking botocore's output shapes, attribute by
    attribute: half of moto_server's CPU under the local cloud's load (py-spy --gil), 15 ms of
    each alarm's 30. A DynamoDB data-plane result is already the wire format, so it is dumped as
    JSON directly (same body, tests/integration/test_moto_fast_path.py); anything else, errors
    included, goes through moto's serializer. Returns moto's original for that comparison."""
    from moto.core.utils import get_service_model
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.serialized
    model = get_service_model("dynamodb")
    # moto's dicts carry a few keys outside the output shape (legacy ConsumedCapacityUnits): drop them
    members = {a: frozenset(model.operation_model(a).output_shape.members) for a in DATA_PLANE}

    def serialized(self: Any, action_result: Any) -> Any:
        result = action_result.result
        action = self._get_action()
        if type(result) is dict and action in DATA_PLANE:
            keep = members[action]
            try:
                body = json.dumps({k: v for k, v in result.items() if k in keep and v is not None},
                                  default=_wire_json)
            except (TypeError, ValueError):
                return original(self, action_result)
            return 200, {"Content-Type": "application/x-amz-json-1.0", **self.response_headers}, body
        return original(self, action_result)

    DynamoHandler.serialized = serialized  # type: ignore[method-assign]
    return original
