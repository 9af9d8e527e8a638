"""DynamoDB capacity units from item sizes, by the documented rules (moto's ConsumedCapacity is a
constant 0.5 / 1.0 whatever the item, so we compute it ourselves).

Item size (CapacityUnitCalculations): attribute name bytes + value bytes; strings UTF-8 bytes,
numbers 1 byte per two significant digits + 1, binary raw bytes, bool/null 1 byte, list/map
3 bytes + 1 byte per element + the elements, sets the sum of their elements.
Reads (read-write-operations): 4 KB units per request (GetItem per item, Query/Scan on the sum of
the items evaluated, BatchGetItem per item), eventually consistent half, transactional double,
at least one unit. Writes: 1 KB units of the larger of the item before and after, at least one,
transactional double.
"""

from __future__ import annotations

import base64
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

READ_UNIT_BYTES = 4096
WRITE_UNIT_BYTES = 1024
PARTITION_WCU_PER_S = 1000  # DynamoDB's per-partition write limit
PARTITION_RCU_PER_S = 3000


def _utf8(text: str) -> int:
    return len(text.encode("utf-8"))


def number_size(text: str) -> int:
    """Bytes of a DynamoDB number: 1 per two significant digits, plus 1."""
    digits = text.strip().lstrip("+-")
    mantissa = digits.lower().split("e", 1)[0].replace(".", "")
    significant = mantissa.strip("0") or "0"
    return (len(significant) + 1) // 2 + 1


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one AttributeValue in wire form ({"S": "x"}, {"N": "1.5"}, {"M": {...}}...)."""
    (kind, v), = value.items()
    if kind == "S":
        return _utf8(v)
    if kind == "N":
        return number_size(v)
    if kind == "B":
        return len(v) if isinstance(v, bytes | bytearray) else len(base64.b64decode(v))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(_utf8(s) for s in v)
    if kind == "NS":
        return sum(number_size(s) for s in v)
    if kind == "BS":
        return sum(value_size({"B": b}) for b in v)
    if kind == "L":
        return 3 + sum(1 + value_size(e) for e in v)
    if kind == "M":
        return 3 + sum(1 + _utf8(k) + value_size(e) for k, e in v.items())
    raise ValueError(f"unknown attribute type {kind!r}")


def item_size(item: Mapping[str, Mapping[str, Any]] | None) -> int:
    """Bytes of an item in wire form (0 for no item)."""
    if not item:
        return 0
    return sum(_utf8(name) + value_size(value) for name, value in item.items())


def read_units(nbytes: int, consistent: bool = False, transactional: bool = False) -> float:
    """RCU of one read of `nbytes` (an item, or the items one Query/Scan page evaluated)."""
    units = max(1, math.ceil(nbytes / READ_UNIT_BYTES))
    if transactional:
        return 2.0 * units
    return float(units) if consistent else units / 2


def write_units(nbytes: int, transactional: bool = False) -> float:
    """WCU of one item write of `nbytes` (the larger of before and after)."""
    units = max(1, math.ceil(nbytes / WRITE_UNIT_BYTES))
    return 2.0 * units if transactional else float(units)


def peak_rate(events: Iterable[tuple[int, str, float]], window_ms: int = 1000) -> tuple[str | None, float]:
    """The busiest key: (key, most units it took in any `window_ms`-long window).

    `events` are (time ms, key, units); windows slide, so a burst straddling a second boundary
    is not split in two.
    """
    by_key: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for t, key, units in events:
        by_key[key].append((t, units))
    best_key: str | None = None
    best = 0.0
    for key, series in by_key.items():
        series.sort()
        lo = 0
        total = 0.0
        for t, units in series:
            total += units
            while series[lo][0] <= t - window_ms:
                total -= series[lo][1]
                lo += 1
            if total > best:
                best, best_key = total, key
    return best_key, best


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of the values; 0 for none."""
    data = sorted(values)
    if not data:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(data)))
    return float(data[rank - 1])
