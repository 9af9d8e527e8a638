"""What the offline sweep and its fan-out workers share about incidents (fourth alarm): offline
episodes (`Candidate`), members, the incident as read, what a sweep did (`SweepResult`), and
reading in parallel. boxwatch.outage decides incidents, boxwatch.outage_notify tells their
neighbours; docs/network-status.md."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from boxwatch import geo
from boxwatch.models import BoxItem, IncidentItem, IncidentMemberItem
from boxwatch.settings import Settings

OPEN = "OPEN"


INCIDENT_DAYS = 90  # resolved incidents (and what clients were told) kept for audit, then TTL


@dataclass
class Candidate:
    """An offline episode: a box's disconnect (version) at `offline_at`, ended at `ended_at` (None: open)."""

    box_id: str
    name: str
    lat: float
    lng: float
    offline_at: int  # epoch ms
    incident: str | None = None  # the incident it already belongs to
    version: int = 0
    ended_at: int | None = None

    @property
    def key(self) -> tuple[str, int]:
        return self.box_id, self.version


def content_hash(box_ids: Iterable[str]) -> str:
    return hashlib.sha256(",".join(sorted(box_ids)).encode()).hexdigest()[:16]


@dataclass
class Member:
    t: int  # offline time of its latest episode in the incident
    seq: int  # member number of that episode
    version: int | None  # its disconnect version (None: recorded by an older version of boxwatch)
    versions: set[int] = field(default_factory=set)


@dataclass
class Incident:
    item: IncidentItem
    members: dict[str, Member]
    new: bool = False  # opened by this sweep
    changed: bool = False  # members joined in this sweep

    @property
    def incident_id(self) -> str:
        return str(self.item.incident_id)

    def holds(self, c: Candidate) -> bool:
        m = self.members.get(c.box_id)
        if m is None:
            return False
        return c.version in m.versions if m.versions else m.t == c.offline_at


def members_of(item: IncidentItem) -> dict[str, Member]:
    out = {}
    for m in IncidentMemberItem.rows(item.pk):
        versions = {int(v) for v in (m.versions or [])}
        out[m.box_id] = Member(int(m.t), int(m.seq), None if m.version is None else int(m.version), versions)
    return out


T = TypeVar("T")


# the shards of a bucket are read side by side: a sweep's latency stays one Query's. As many
# threads as the table client has pooled connections (pynamodb's default, 10): more would wait
# for a connection and make urllib3 drop the surplus ("Connection pool is full")
READ_THREADS = 10


_READERS: list[ThreadPoolExecutor] = []  # one pool per container: threads outlive an invocation


K = TypeVar("K")


WRITE_CHUNK = 500  # items per task of a parallel batch read or write (20 BatchWriteItem, 5 BatchGetItem)


def chunked(items: Sequence[K], size: int) -> list[Sequence[K]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def read_all(keys: Sequence[K], read: Callable[[K], list[T]]) -> list[T]:
    """`read` of every partition key, in parallel threads (botocore clients are thread-safe), the
    results in the order of `keys` (a sweep decides the same whatever the threads' timing).

    The first key is read on the calling thread: that read builds the table's client, which the
    threads then share. Threads that all find no client yet each build one (a botocore session and
    its JSON models per thread, 0.1-0.2 s of CPU each), which starved every other function of a
    busy container.
    """
    if not keys:
        return []
    first = read(keys[0])
    if len(keys) == 1:
        return first
    if not _READERS:
        _READERS.append(ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="shard-read"))
    return first + [x for part in _READERS[0].map(read, keys[1:]) for x in part]


def nearest_member(group: Sequence[Candidate], settings: Settings) -> Callable[[float, float], float | None]:
    """The distance from a point to the nearest member within the outage radius (None: none within).
    Only the members in the cells covering the point's radius are measured: a box next to a
    100,000-box blackout is measured against its neighbours, not against every member (the cover
    is complete, so the nearest member within the radius is among them)."""
    radius, res = settings.outage_radius_m, settings.area_res
    by_cell: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for c in group:
        by_cell[geo.cell_of(c.lat, c.lng, res)].append((c.lat, c.lng))

    def nearest(lat: float, lng: float) -> float | None:
        found = [geo.distance_m((lat, lng), p) for cell in geo.covering_cells(lat, lng, radius, res)
                 for p in by_cell.get(cell, ())]
        d = min(found, default=None)
        return d if d is not None and d <= radius else None

    return nearest


@dataclass
class SweepResult:
    at_ms: int
    candidates: int = 0
    clusters: list[list[str]] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    blips: list[str] = field(default_factory=list)  # clusters all back when first decided: nobody told
    notified: dict[str, list[str]] = field(default_factory=dict)  # incident -> clients sent to
    third_alarms: list[str] = field(default_factory=list)  # boxes whose late alarm the sweep caught
    failed: list[tuple[str, str]] = field(default_factory=list)  # (client, error) to retry next sweep
    storms: list[str] = field(default_factory=list)  # incidents found to be area outages (storm mode) now
    all_clears: dict[str, list[str]] = field(default_factory=dict)  # storm incident -> clients told it is back
    unlinked: dict[str, list[str]] = field(default_factory=dict)  # incident -> members a late connect unlinked
    parts: dict[str, int] = field(default_factory=dict)  # incident -> area parts sent to OutageNotify


@dataclass(frozen=True)
class Extent:
    """What a push says of the whole incident: how many members, their first and last drop. A part
    of a fanned-out incident holds only the members near it, so the sweep sends these along."""

    count: int
    first: int
    last: int

    @classmethod
    def of(cls, group: Sequence[Candidate]) -> Extent:
        return cls(len(group), min(c.offline_at for c in group), max(c.offline_at for c in group))


def still_open(m: Member, box: BoxItem | None) -> bool:
    """Is the member's latest episode open? Until a connect of a higher version has arrived."""
    if box is None:
        return False
    if m.version is not None:
        return int(box.last_connect_version or 0) <= m.version
    return not box.online and int(box.status_since) == m.t  # recorded before versions were kept


def group_of(inc: Incident, boxes: dict[str, BoxItem]) -> list[Candidate]:
    """The incident's member boxes, for distances and the push (each box once, its latest episode)."""
    out = [Candidate(b, boxes[b].name, float(boxes[b].lat), float(boxes[b].lng), m.t, inc.incident_id,
                     m.version or 0) for b, m in inc.members.items() if b in boxes]
    return sorted(out, key=lambda c: (c.offline_at, c.box_id))


def boxes_of(ids: Sequence[str]) -> list[BoxItem]:
    """BatchGetItem of boxes (consistent), 100 per request, chunks of them side by side."""
    return read_all(chunked(list(ids), WRITE_CHUNK),
                    lambda chunk: list(BoxItem.batch_get(chunk, consistent_read=True)))
