"""The offline and arrival index buckets are sharded by box id: a blackout spreads its writes over
INDEX_SHARDS partition keys, and the sweep reads them all (docs/network-status.md "Items")."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from boxwatch.incidents import read_all
from boxwatch.models import INDEX_SHARDS, ArrivalEntry, OfflineEntry, index_shard

T = 1_767_225_600_000


def test_a_box_keeps_its_shard_across_processes() -> None:
    # Given a box id / When another interpreter (another hash seed) computes its shard
    code = "from boxwatch.models import index_shard; print(index_shard('BX-000123'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "12345", "PATH": ""})
    # Then it is the same: an episode written by one Lambda is read by another
    assert int(other.stdout) == index_shard("BX-000123")


def test_a_blackout_spreads_over_every_shard_evenly() -> None:
    # Given 100,000 boxes dropping in one minute
    keys = Counter(OfflineEntry.key(T + i % 60_000, f"BX-{i:06d}", 2)[0] for i in range(100_000))
    # Then their episodes use every shard of the minute bucket, none with much more than its share
    assert len(keys) == INDEX_SHARDS
    assert max(keys.values()) < 1.1 * 100_000 / INDEX_SHARDS
    # and the arrival index takes the same shard per box
    pk, _ = ArrivalEntry.key(T, "BX-000001", 2, False)
    assert pk == f"ARR#{T // 3_600_000}#D#{index_shard('BX-000001')}"


def test_read_all_keeps_the_order_of_the_keys() -> None:
    # Given reads that finish in any order / Then the results come in the order of the keys
    keys = [f"k{i}" for i in range(40)]
    assert read_all(keys, lambda k: [k, k + "!"]) == [x for k in keys for x in (k, k + "!")]
