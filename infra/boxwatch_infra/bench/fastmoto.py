"""Bench-only speed-ups for moto's DynamoDB, so that a storm's tables can grow in-process.

moto answers a base-table Query by sorting every item of the table and keeping the partition's,
and backs up each table a TransactWriteItems touches with a deep copy of the whole table (once
per item). Both make an alarm's cost in moto grow with everything stored before it, which
DynamoDB's does not. While `faster_moto()` is active:

- a base-table Query sees only its partition's items (sorted as moto sorts them): same results;
- a GSI or LSI Query sees only the items with its index hash key (a per-index map, rebuilt after
  any put, delete or update of the table), and with `BETWEEN` on the index sort key only those
  in range (bisected on a sorted copy, by the same Decimal/str values moto compares): same
  results, same ScannedCount;
- a TransactWriteItems takes no backup copy of the tables it touches, so a cancelled transaction
  is not rolled back in moto. The benchmarks send no duplicates and make no conflicting writes,
  so none is cancelled; the storm counts failed deliveries and reports them.

Nothing here changes which requests the handlers make or what they read.
"""

from __future__ import annotations

import bisect
import contextlib
import inspect
import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any
from unittest import mock


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
        yield


@contextlib.contextmanager
def reused_connection() -> Iterator[bool]:
    """The fix proposed for the domain's `TransactWrite(connection=Connection())`: one pynamodb
    Connection per container instead of a new one - a new botocore session whose JSON models are
    parsed again, ~0.1-0.2 s here - per call. Requests are unchanged. Yields whether any domain
    module still builds one per call (nothing to patch otherwise)."""
    import importlib
    import pkgutil

    from pynamodb.connection import Connection

    import boxwatch

    modules = []
    for info in pkgutil.iter_modules(boxwatch.__path__):
        try:
            module = importlib.import_module(f"boxwatch.{info.name}")
        except Exception:  # a module mid-edit elsewhere: handlers that import it fail on their own
            continue
        # boxwatch.models holds the one shared Connection (the fix itself): nothing to patch there
        if getattr(module, "Connection", None) is Connection and not hasattr(module, "_CONNECTION"):
            modules.append(module)
    if not modules:
        yield False
        return
    shared = Connection()
    with contextlib.ExitStack() as stack:
        for module in modules:
            stack.enter_context(mock.patch.object(module, "Connection", lambda *a, **k: shared))
        yield True
