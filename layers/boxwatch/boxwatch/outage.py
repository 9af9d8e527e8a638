"""Offline clusters (fourth alarm): boxes near each other dropping together warn the neighbours.

The rules are docs/claims.md "Fourth alarm". Each disconnect (clean or not) of a box starts an
offline episode [s, e), ended by the box's connect with the smallest higher version that has
arrived. Two drops x, y (s_x <= s_y, different boxes) are linked when the boxes are within
`outage_radius_m`, `s_y - s_x <= outage_max_gap_s` and x was still offline when y dropped
(`s_y < e_x`); clusters are the connected components of links.

A sweep runs at event time T (the scheduled event's own `time`) and decides with what has arrived
by T. It reads only what changed: the lifecycle events that ARRIVED in its last minutes (one or two
Queries of the arrival index, so an event arriving late is not lost to a lookback), the episodes
near each new drop's instant (the offline index by event time), the open incidents and the boxes
involved. A cluster of two or more boxes is an incident; while at least one member episode is
open it is live, and the clients of every online non-member box within the radius of a member are
warned once, then once per sweep in which it grew (never the same content twice). A cluster whose
members are all back when it is first decided is recorded as a resolved blip, nobody told.
See docs/network-status.md.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from pynamodb.exceptions import PutError, UpdateError

from boxwatch import alarm_life, geo, storm
from boxwatch.bindings import bindings_of_box
from boxwatch.changes import note_alarm
from boxwatch.devices import devices_of
from boxwatch.idempotency import Idempotency
from boxwatch.models import (
    ARRIVAL_BUCKET_MS,
    INDEX_SHARDS,
    OFFLINE_BUCKET_MS,
    ArrivalEntry,
    BindingItem,
    BoxItem,
    EpisodeIncidentItem,
    IncidentClientItem,
    IncidentItem,
    IncidentMemberItem,
    OfflineEntry,
    OrgIncidentItem,
    PresenceLogItem,
    condition_failed,
)
from boxwatch.network import LIFECYCLE_DAYS, Drop, ThirdAlarmFailed, offline_after_alarm
from boxwatch.notify import LISTED_IN_DATA, NAMED_IN_TEXT, Notification, SendReport, send
from boxwatch.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

    from boxwatch.events import OutagePart

OPEN = "OPEN"
LATE_CHECKS_PER_SWEEP = 2_000  # ~4,000 requests at most, well inside the sweep's timeout
INCIDENT_DAYS = 90  # resolved incidents (and what clients were told) kept for audit, then TTL
# The second late third-alarm check, after Lambda's asynchronous retries of a failed AlarmIngest
# (about 1 and 2 minutes apart) had their chance to store an alarm received before the drop.
LATE_ALARM_S = 240


def evaluate_window_ms(settings: Settings) -> int:
    """Drops that arrived this long before a sweep are (re)clustered by it: the last interval, and
    two more so that a failed or late sweep leaves nothing unclustered."""
    return 3 * settings.sweep_interval_s * 1000


def late_checks_ms(settings: Settings) -> tuple[int, int]:
    """After a drop's arrival, when the sweep looks again for an alarm stored after it was processed:
    one interval (a concurrent AlarmIngest), then LATE_ALARM_S (AlarmIngest's retries)."""
    return settings.sweep_interval_s * 1000, max(LATE_ALARM_S, 2 * settings.sweep_interval_s) * 1000


def arrival_window_ms(settings: Settings) -> int:
    """How far back (arrival time) a sweep reads the arrival index: the second late check, plus
    the evaluation window so that a few failed sweeps leave nothing behind."""
    return late_checks_ms(settings)[1] + evaluate_window_ms(settings)


# -------------------------------------------------------------------- clustering (pure)
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


def linked(x: Candidate, y: Candidate, radius_m: float, gap_s: int) -> bool:
    """The link rule of docs/claims.md, evaluated at the later drop's instant."""
    if x.box_id == y.box_id:
        return False
    first, second = (x, y) if (x.offline_at, x.key) <= (y.offline_at, y.key) else (y, x)
    if second.offline_at - first.offline_at > gap_s * 1000:
        return False

    def still_offline(a: Candidate, at: int) -> bool:
        return a.ended_at is None or at < a.ended_at

    # at equal times either may be "the earlier one"
    ok = still_offline(first, second.offline_at) or (
        first.offline_at == second.offline_at and still_offline(second, first.offline_at))
    return ok and geo.distance_m((x.lat, x.lng), (y.lat, y.lng)) <= radius_m


def pair_res(radius_m: float) -> int:
    """The resolution clustering buckets episodes by: the finest whose average edge is at least a
    quarter of the radius (a cell holds few episodes, its reach is a few rings)."""
    for res in range(15, -1, -1):
        if geo.h3.average_hexagon_edge_length(res, unit="m") >= radius_m / 4:
            return res
    return 0


def cluster(cands: Sequence[Candidate], radius_m: float, gap_s: int,
            linked_groups: Iterable[Sequence[tuple[str, int]]] = ()) -> list[list[Candidate]]:
    """Connected components of `linked`, plus the `linked_groups` (episode keys held together).

    Episodes are bucketed by H3 cell and pairs are looked for only between cells within reach of
    each other, so the work grows with the candidates and their density, not with their square.
    A cell whose episodes are all in one component and a cell in the same component add nothing
    and are not compared: a 100,000-box blackout (one component) costs about one look per cell
    pair, not one distance per pair of boxes.
    """
    parent = {c.key: c.key for c in cands}

    def find(x: tuple[str, int]) -> tuple[str, int]:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: tuple[str, int], b: tuple[str, int]) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for group in linked_groups:
        present = [k for k in group if k in parent]
        for k in present[1:]:
            union(present[0], k)
    gap_ms = gap_s * 1000

    def compare(xs: Sequence[Candidate], ys: Sequence[Candidate] | None) -> None:
        """Union the linked pairs of xs x ys (of xs among themselves when ys is None); a pair
        already in one component is not measured."""
        for i, c in enumerate(xs):
            ck = c.key
            for d in (xs[i + 1:] if ys is None else ys):
                dk = d.key
                if abs(c.offline_at - d.offline_at) > gap_ms or find(ck) == find(dk):
                    continue
                if linked(c, d, radius_m, gap_s):
                    union(ck, dk)

    res = pair_res(radius_m)
    by_cell: dict[str, list[Candidate]] = defaultdict(list)
    for c in cands:
        by_cell[geo.cell_of(c.lat, c.lng, res)].append(c)
    cells = sorted(by_cell)
    for cell in cells:
        compare(by_cell[cell], None)
    # a cell's episodes all in one component (unions never split one): one representative stands for them
    whole = {cell: by_cell[cell][0].key for cell in cells
             if len({find(c.key) for c in by_cell[cell]}) == 1}
    # neighbouring cells first: a blackout is one component before the farther rings are looked at
    reach = {cell: geo.reach(cell, radius_m) for cell in cells}
    for ring in range(max((len(r) for r in reach.values()), default=0)):
        for cell in cells:
            for other in reach[cell][ring] if ring < len(reach[cell]) else ():
                if other <= cell or other not in by_cell:
                    continue  # each pair of cells once
                if cell in whole and other in whole and find(whole[cell]) == find(whole[other]):
                    continue
                compare(by_cell[cell], by_cell[other])
    groups: dict[tuple[str, int], list[Candidate]] = defaultdict(list)
    for c in cands:
        groups[find(c.key)].append(c)
    out = [sorted(g, key=lambda c: (c.offline_at, c.key)) for g in groups.values()]
    return sorted(out, key=lambda g: (g[0].offline_at, g[0].key))


def content_hash(box_ids: Iterable[str]) -> str:
    return hashlib.sha256(",".join(sorted(box_ids)).encode()).hexdigest()[:16]


# -------------------------------------------------------------------- incidents
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


def _members(item: IncidentItem) -> dict[str, Member]:
    out = {}
    for m in IncidentMemberItem.rows(item.pk):
        versions = {int(v) for v in (m.versions or [])}
        out[m.box_id] = Member(int(m.t), int(m.seq), None if m.version is None else int(m.version), versions)
    return out


def open_incidents() -> dict[str, Incident]:
    """The open incidents (sparse index) and their members: one Query each, paged by DynamoDB."""
    return {item.incident_id: Incident(item, _members(item)) for item in IncidentItem.open_incidents.query(OPEN)}


def _write_members(incident_id: str, members: dict[str, Member], expires_at: int | None = None) -> None:
    """The members' rows, 25 per BatchWriteItem, chunks of them side by side (a blackout's 100,000
    members are 4,000 requests: one thread would take 24 s of them)."""
    def write(chunk: Sequence[tuple[str, Member]]) -> list[None]:
        with IncidentMemberItem.batch_write() as batch:
            for box_id, m in chunk:
                batch.save(IncidentMemberItem(
                    *IncidentMemberItem.key(incident_id, box_id), box_id=box_id, t=m.t, seq=m.seq,
                    version=m.version, versions=sorted(m.versions) if m.versions else None, expires_at=expires_at))
        return []

    read_all(chunked(list(members.items()), WRITE_CHUNK), write)


def boxes_of(ids: Sequence[str]) -> list[BoxItem]:
    """BatchGetItem of boxes (consistent), 100 per request, chunks of them side by side."""
    return read_all(chunked(list(ids), WRITE_CHUNK),
                    lambda chunk: list(BoxItem.batch_get(chunk, consistent_read=True)))


def _write_pointers(incident_id: str, members: dict[str, Member], at_ms: int) -> None:
    """Each member episode -> its incident, for drops that arrive after the incident resolved."""
    with EpisodeIncidentItem.batch_write() as batch:
        for box_id, m in members.items():
            for v in m.versions:
                batch.save(EpisodeIncidentItem(*EpisodeIncidentItem.key(box_id, v), incident_id=incident_id,
                                               expires_at=at_ms // 1000 + LIFECYCLE_DAYS * 86_400))


def _resolved_incidents(episodes: Iterable[Candidate], known: dict[str, Incident]) -> dict[tuple[str, int], str]:
    """Episodes not in an open incident that belong to a resolved one (pointers, BatchGetItem): episode
    -> incident id (merges followed to the survivor); the incidents read are added to `known`."""
    keys = sorted({EpisodeIncidentItem.key(c.box_id, c.version) for c in episodes})
    if not keys:
        return {}
    ids = {(p.pk.removeprefix("BOX#"), int(p.sk.removeprefix("INC#"))): p.incident_id
           for p in read_all(chunked(keys, WRITE_CHUNK),
                             lambda chunk: list(EpisodeIncidentItem.batch_get(chunk, consistent_read=True)))}
    out: dict[tuple[str, int], str] = {}
    for key, incident_id in ids.items():
        seen: set[str] = set()
        while incident_id not in known and incident_id not in seen:  # follow merges to the survivor
            seen.add(incident_id)
            try:
                item = IncidentItem.get(*IncidentItem.key(incident_id), consistent_read=True)
            except IncidentItem.DoesNotExist:
                break
            if item.merged_into:
                incident_id = str(item.merged_into)
                continue
            known[incident_id] = Incident(item, _members(item))
        if incident_id in known:
            out[key] = incident_id
    return out


# -------------------------------------------------------------------- reads
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


def recent_arrivals(at_ms: int, settings: Settings, kind: str = "D") -> list[ArrivalEntry]:
    """Drops (D) or connects (C) that arrived in (at - window, at]: one Query per arrival bucket (1, 2 across
    the hour) and shard, whatever the fleet's size."""
    lo = at_ms - arrival_window_ms(settings) + 1
    buckets = range(lo // ARRIVAL_BUCKET_MS, at_ms // ARRIVAL_BUCKET_MS + 1)
    keys = [ArrivalEntry.bucket_key(bucket, kind, shard) for bucket in buckets for shard in range(INDEX_SHARDS)]

    def read(pk: str) -> list[ArrivalEntry]:
        return list(ArrivalEntry.query(pk, ArrivalEntry.sk.between(f"{lo:013d}", f"{at_ms:013d}#\uffff"),
                                       consistent_read=True))

    return sorted(read_all(keys, read), key=lambda a: a.sk)


def _areas(incidents: dict[str, Incident]) -> list[tuple[float, float, float]]:
    """The drawn areas of the open incidents that have one (centre lat, lng, radius m)."""
    return [(float(i.item.center_lat), float(i.item.center_lng), float(i.item.radius_m)) for i in incidents.values()
            if i.item.state == "open" and i.item.center_lat is not None and i.item.center_lng is not None
            and i.item.radius_m is not None]


def _near_areas(connects: list[ArrivalEntry], areas: list[tuple[float, float, float]]) -> list[ArrivalEntry]:
    return [a for a in connects if any(geo.distance_m((lat, lng), (float(a.lat), float(a.lng))) <= r
                                       for lat, lng, r in areas)]


def episodes_near(drops: Iterable[ArrivalEntry], at_ms: int, settings: Settings) -> dict[tuple[str, int], Candidate]:
    """Every episode (arrived by `at_ms`) that started within the gap of a drop's instant: one Query
    per minute bucket of the offline index, shared by drops of the same minutes."""
    gap = settings.outage_max_gap_s * 1000
    buckets: set[int] = set()
    for d in drops:
        t = int(d.timestamp)
        buckets.update(range((t - gap) // OFFLINE_BUCKET_MS, (t + gap) // OFFLINE_BUCKET_MS + 1))
    keys = [OfflineEntry.bucket_key(b, shard) for b in sorted(buckets) for shard in range(INDEX_SHARDS)]
    out: dict[tuple[str, int], Candidate] = {}
    for e in sorted(read_all(keys, lambda pk: list(OfflineEntry.query(pk, consistent_read=True))),
                    key=lambda e: e.sk):
        if e.arrived_at is not None and int(e.arrived_at) > at_ms:
            continue  # not arrived yet at the sweep's time
        c = Candidate(e.box_id, e.name, float(e.lat), float(e.lng), int(e.offline_at), version=int(e.version),
                      ended_at=None if e.ended_at is None else int(e.ended_at))
        out[c.key] = c
    return out


def online_neighbours(group: Sequence[Candidate], settings: Settings) -> dict[str, tuple[BoxItem, float]]:
    """Online boxes within the outage radius of any member: box id -> (box, distance to nearest member).

    One Query of the area-cell index per cell covering a member (cells shared by members once).
    """
    members = {c.box_id for c in group}
    cells: dict[str, None] = {}
    for c in group:
        cells.update(dict.fromkeys(geo.covering_cells(c.lat, c.lng, settings.outage_radius_m, settings.area_res)))
    nearest = nearest_member(group, settings)
    out: dict[str, tuple[BoxItem, float]] = {}
    for cell in cells:
        for item in BoxItem.by_area_cell.query(cell):
            if item.box_id in members or not item.online:
                continue
            d = nearest(float(item.lat), float(item.lng))
            if d is not None:
                out[item.box_id] = (item, d)
    return out


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


# -------------------------------------------------------------------- the sweep
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


def neighbour_outage_notification(box: BoxItem, distance_m: float, group: Sequence[Candidate],
                                  incident: IncidentItem, extent: Extent | None = None) -> Notification:
    # nearest first; a push (4 KB) lists the nearest LISTED_IN_DATA, the incident holds them all
    named = sorted(
        ({"id": c.box_id, "name": c.name, "distance_m": round(geo.distance_m((box.lat, box.lng), (c.lat, c.lng)), 1)}
         for c in group),
        key=lambda b: (b["distance_m"], b["id"]),
    )
    offline = sorted(str(b["id"]) for b in named[:LISTED_IN_DATA])
    extent = extent or Extent.of(group)
    first, last = extent.first, extent.last
    area = {"lat": incident.center_lat, "lng": incident.center_lng, "radius_m": incident.radius_m}
    return Notification(
        kind="neighbour_outage",
        box_id=box.box_id,
        at_ms=last,
        data={"offline_boxes": offline, "boxes": offline, "offline_count": extent.count,
              "incident": incident.incident_id, "area": area, "first_offline_at": first, "last_offline_at": last,
              "distance_m": round(distance_m, 1)},
        context={"count": extent.count, "box_name": box.name, "boxes_named": named[:NAMED_IN_TEXT],
                 "span_s": (last - first) / 1000},
    )


def _area(group: Sequence[Candidate], settings: Settings) -> tuple[float, float, float]:
    """Center of the member boxes and the radius within which neighbours were warned."""
    lat = sum(c.lat for c in group) / len(group)
    lng = sum(c.lng for c in group) / len(group)
    spread = max(geo.distance_m((lat, lng), (c.lat, c.lng)) for c in group)
    return lat, lng, round(spread + settings.outage_radius_m, 1)


def _still_open(m: Member, box: BoxItem | None) -> bool:
    """Is the member's latest episode open? Until a connect of a higher version has arrived."""
    if box is None:
        return False
    if m.version is not None:
        return int(box.last_connect_version or 0) <= m.version
    return not box.online and int(box.status_since) == m.t  # recorded before versions were kept


def _group(inc: Incident, boxes: dict[str, BoxItem]) -> list[Candidate]:
    """The incident's member boxes, for distances and the push (each box once, its latest episode)."""
    out = [Candidate(b, boxes[b].name, float(boxes[b].lat), float(boxes[b].lng), m.t, inc.incident_id,
                     m.version or 0) for b, m in inc.members.items() if b in boxes]
    return sorted(out, key=lambda c: (c.offline_at, c.box_id))


def _resolve(inc: Incident, at_ms: int, boxes: dict[str, BoxItem], merged_into: str | None = None,
             blip: bool = False) -> bool:
    """Close an incident. Its resolution time is an event time: the last member's status change."""
    since = [int(boxes[b].status_since) for b in inc.members if b in boxes and boxes[b].online]
    expires_at = at_ms // 1000 + INCIDENT_DAYS * 86_400  # never while open
    item = inc.item
    item.state, item.open_key, item.updated_at, item.expires_at = "resolved", None, at_ms, expires_at
    item.resolved_at = at_ms if merged_into else max(since, default=at_ms)
    if merged_into:
        item.merged_into = merged_into
    if blip:
        item.blip = True
    try:
        item.save()  # optimistic lock on `revision` (a new blip: "does not exist yet")
    except PutError as exc:
        if not condition_failed(exc):
            raise
        return False  # another sweep changed it first; the next sweep looks again
    # its members expire with it, and each of its episodes points to it (25 per request)
    _write_members(inc.incident_id, inc.members, expires_at)
    _write_pointers(inc.incident_id, inc.members, at_ms)
    if not merged_into and not blip:  # what the operators list as resolved: the incidents people heard of
        orgs = sorted({boxes[b].org or "default" for b in inc.members if b in boxes})
        for org in orgs:  # one or two organisations per incident: a PutItem each
            OrgIncidentItem(*OrgIncidentItem.key(org, int(item.resolved_at), inc.incident_id),
                            incident_id=inc.incident_id, expires_at=expires_at).save()
    return True


def _member_episodes(inc: Incident, boxes: dict[str, BoxItem], ends: dict[str, int]) -> list[Candidate]:
    """Every episode of the incident's members, with its end as known now (the offline index), not
    only each member's latest: an earlier episode may be what links another member."""
    wanted = [(b, v) for b, m in inc.members.items() if b in boxes for v in sorted(m.versions or {m.version or 0})]
    logs = {(r.pk, r.sk): r for r in PresenceLogItem.batch_get(
        [PresenceLogItem.key(b, v, False) for b, v in wanted], consistent_read=True)}
    starts = {}
    for b, v in wanted:
        row = logs.get(PresenceLogItem.key(b, v, False))
        if row is not None:
            starts[(b, v)] = int(row.timestamp)
    offline = {(int(e.version), e.box_id): e for e in OfflineEntry.batch_get(
        [OfflineEntry.key(t, b, v) for (b, v), t in starts.items()], consistent_read=True)}
    out = []
    for b, v in wanted:
        m = inc.members[b]
        latest = v == (m.version or 0)
        t = starts.get((b, v), m.t if latest else None)
        if t is None:
            continue  # its log expired: the episode is long over
        entry = offline.get((v, b))
        end = None if entry is None or entry.ended_at is None else int(entry.ended_at)
        if latest and b in ends:
            end = ends[b] if end is None else min(end, ends[b])
        out.append(Candidate(b, "", float(boxes[b].lat), float(boxes[b].lng), t, inc.incident_id, v, end))
    return out


def _unlink(inc: Incident, boxes: dict[str, BoxItem], connects: Sequence[ArrivalEntry], settings: Settings,
            at_ms: int, result: SweepResult) -> list[Incident]:
    """Re-cluster an incident whose members a late connect shows were not all linked
    (docs/claims.md "Fourth alarm"); returns the incidents split off it.

    A member's episode ends at the first connect above its disconnect version. When that connect
    arrives after the member was decided, the members' episodes (every one, each with its end as
    known now) are clustered again. A member none of whose episodes links to another member was
    never part of the outage: it leaves the incident and, online next to it, its clients become
    recipients. When two clusters are left, the one holding the incident's first drop keeps it and
    each other one becomes an incident of its own, carrying what its clients were told.
    """
    ends: dict[str, int] = {}
    for a in connects:
        m = inc.members.get(a.box_id)
        if m is not None and m.version is not None and int(a.version) > m.version:
            ends[a.box_id] = min(ends.get(a.box_id, int(a.timestamp)), int(a.timestamp))
    if not ends:
        return []
    episodes = _member_episodes(inc, boxes, ends)
    groups = [g for g in cluster(episodes, settings.outage_radius_m, settings.outage_max_gap_s)
              if len({c.box_id for c in g}) >= 2]
    if not groups:
        # no cluster is left at all: the incident stays as decided and resolves as it is, but warns
        # nobody new, and a drop that joins it later keeps only the members linked to it (_join)
        if not inc.item.unlinked:
            inc.item.unlinked = True
            try:
                inc.item.save()  # optimistic lock on `revision`
            except PutError as exc:
                if not condition_failed(exc):
                    raise
        return []
    # each box goes with the cluster of its latest linked episode; the first cluster holds the
    # incident's first drop and keeps it (an area outage stays whole)
    latest: dict[str, tuple[int, int]] = {}
    for i, g in enumerate(groups):
        for c in g:
            if c.box_id not in latest or c.offline_at > latest[c.box_id][0]:
                latest[c.box_id] = (c.offline_at, 0 if inc.item.storm else i)
    # a member whose episodes are no longer known stays, as decided
    gone = sorted({c.box_id for c in episodes} - set(latest))
    moved = {b for b, (_, i) in latest.items() if i}
    parts = [p for p in ([b for b, (_, i) in sorted(latest.items()) if i == k] for k in range(1, len(groups)))
             if len(p) >= 2]
    if not gone and not moved:
        return []
    item = inc.item
    item.member_count, item.unlinked = len(inc.members) - len(gone) - len(moved), None
    try:
        item.save()  # optimistic lock on `revision`
    except PutError as exc:
        if not condition_failed(exc):
            raise
        return []  # another sweep changed it first: the next sweep looks again
    split = [_split_off(inc, part, at_ms) for part in parts]
    with IncidentMemberItem.batch_write() as batch:
        for b in sorted(set(gone) | moved):
            batch.delete(IncidentMemberItem(*IncidentMemberItem.key(inc.incident_id, b)))
    for b in sorted(set(gone) | moved):
        del inc.members[b]
    inc.changed = True  # its clients and area are decided again
    result.unlinked.setdefault(inc.incident_id, []).extend(sorted(set(gone) | moved))
    out = [s for s in split if s is not None]
    result.opened.extend(s.incident_id for s in out)
    return out


def _split_off(inc: Incident, boxes: list[str], at_ms: int) -> Incident | None:
    """A cluster that a late connect separated from `inc` becomes an incident of its own: its
    members keep their numbers, and each client keeps what it was told (so it hears only news), but
    nobody counts as warned by it (sends 0: its all-clear goes to those it warns)."""
    members = {b: inc.members[b] for b in boxes}
    first = min(boxes, key=lambda b: (members[b].t, b))
    incident_id = f"{members[first].t:013d}-{first}"
    told = list(IncidentClientItem.rows(inc.item.pk))
    pending = any(r.pending_at is not None for r in told)
    new = Incident(IncidentItem(*IncidentItem.key(incident_id), incident_id=incident_id, state="open",
                                open_key=OPEN, member_count=len(members), next_seq=int(inc.item.next_seq),
                                announced_upto=0, opened_at=min(m.t for m in members.values()), updated_at=at_ms,
                                owed_since=at_ms - 1 if pending else None),
                   members, changed=True)
    try:
        new.item.save()  # "does not exist yet": a sweep delivered twice splits once
    except PutError as exc:
        if not condition_failed(exc):
            raise
        return None
    _write_members(incident_id, members)
    with IncidentClientItem.batch_write() as batch:
        for r in told:
            batch.save(IncidentClientItem(
                *IncidentClientItem.key(incident_id, r.client_id), client_id=r.client_id, box_id=r.box_id,
                told_upto=r.told_upto, content_hash=r.content_hash, sends=0, area_told=r.area_told,
                pending_at=r.pending_at,
                updated_at=at_ms, expires_at=r.expires_at))
    return new


def _recipients(group: Sequence[Candidate], settings: Settings,
                only: Sequence[BoxItem] | None) -> dict[str, tuple[BindingItem, BoxItem, float]]:
    """The clients of the online non-member boxes within the radius of a member (of `only`, if
    given): client -> (binding, its nearest such box, distance). A client hears once, about its nearest box."""
    members = {c.box_id for c in group}
    if only is None:
        neighbours = online_neighbours(group, settings)
    else:
        neighbours = {}
        nearest = nearest_member(group, settings)
        for box in only:
            if box.box_id in members or not box.online:
                continue
            d = nearest(float(box.lat), float(box.lng))
            if d is not None:
                neighbours[box.box_id] = (box, d)
    chosen: dict[str, tuple[BindingItem, BoxItem, float]] = {}
    for box_id, (box, d) in sorted(neighbours.items(), key=lambda kv: (kv[1][1], kv[0])):
        for binding in bindings_of_box(box_id):
            if binding.enabled and binding.client_id not in chosen:
                chosen[binding.client_id] = (binding, box, d)
    return chosen


def _all_clear(inc: Incident, at_ms: int, boxes: dict[str, BoxItem], sns: SNSClient, result: SweepResult) -> bool:
    """Before a storm incident resolves, its clients are told the area is back; True when it may
    resolve (no storm, or every all-clear sent)."""
    if not inc.item.storm:
        return True
    back_at = max((int(boxes[b].status_since) for b in inc.members if b in boxes and boxes[b].online), default=at_ms)
    return storm.all_clear(inc.item, back_at, at_ms, sns, result.all_clears.setdefault(inc.incident_id, []),
                           result.failed)


def _warn(inc: Incident, group: Sequence[Candidate], at_ms: int, settings: Settings, sns: SNSClient,
          result: SweepResult, boxes: dict[str, BoxItem], only: Sequence[BoxItem] | None = None,
          extent: Extent | None = None, open_count: int | None = None, seq: int | None = None) -> bool:
    """Tell each client of an online neighbour what it was not told yet; True when nothing failed.

    The highest member number is the content: a client told up to it knows every box of the cluster
    (members only join, and a box back in a new episode joins with a new number). `only`: just
    these boxes' clients (boxes that came online next to a live incident). `extent`, `open_count`,
    `seq` (its highest member number): of the whole incident when `inc.members` and `group` are
    only the members near one part of it (warn_part).
    """
    incident = inc.item
    group_seq = max(m.seq for m in inc.members.values()) if seq is None else seq
    chosen = _recipients(group, settings, only)
    if not chosen:
        return True
    extent = extent or Extent.of(group)  # once, not per client: a blackout has 100,000 members
    if incident.storm:
        # an area outage: one `area_outage` per client, however the cluster grows
        if open_count is None:
            open_count = sum(_still_open(inc.members[c.box_id], boxes.get(c.box_id)) for c in group)
        return storm.warn_area(incident, (extent.first, extent.last), open_count, chosen, at_ms, sns,
                               result.notified.setdefault(incident.incident_id, []), result.failed)
    devices = devices_of(chosen)  # every chosen client's phones in one read, not one per client
    told_before = IncidentClientItem.some(incident.incident_id, chosen)  # the chosen clients' rows only
    ok = True
    warned: dict[str, BoxItem] = {}
    for client_id, (binding, box, d) in sorted(chosen.items()):
        old = told_before.get(client_id)
        note = neighbour_outage_notification(box, d, group, incident, extent)
        # the news as this client reads it: the count and the boxes listed (the nearest ones). A
        # member box back in a later episode, or one member for another far from the client, is
        # no news: never the same push twice
        content = content_hash([*note.data["offline_boxes"], f"#{note.data['offline_count']}"])
        if storm.confirmed(old) and old is not None and (int(old.told_upto) >= group_seq
                                                         or old.content_hash == content):
            continue
        if storm.leased(old, at_ms):
            ok = False  # an overlapping sweep is telling it (or this schedule, delivered twice)
            continue
        record = IncidentClientItem(
            *IncidentClientItem.key(incident.incident_id, client_id), client_id=client_id, box_id=box.box_id,
            told_upto=group_seq, content_hash=content, sends=(old.sends if old else 0) + 1,
            updated_at=at_ms, expires_at=at_ms // 1000 + INCIDENT_DAYS * 86_400)
        if incident.owed_since is None:
            incident.update(actions=[IncidentItem.owed_since.set(at_ms)])  # before any claim (see _owed)
        # claim before sending, so that two overlapping sweeps cannot both send this update
        if not storm.claim_told(record, old):
            continue
        report: SendReport = send(sns, [binding], note, devices=devices)
        if report.failed:
            ok = False
            result.failed.extend(report.failed)
            storm.release(record)  # owed, see _owed
        elif report.sent:
            storm.confirm_told(record)
            result.notified.setdefault(incident.incident_id, []).append(client_id)
            warned[box.box_id] = box
    # each warned box has a fourth alarm with a life (ack, reminder, SMS) until the incident is over
    for box_id, box in sorted(warned.items()):
        alarm_id = alarm_life.open_outage_alarm(box_id, incident.incident_id, at_ms, settings)
        if alarm_id is not None:
            note_alarm(box, alarm_id, at_ms, settings)
    return ok


def _owed(inc: Incident, group: Sequence[Candidate], at_ms: int, sns: SNSClient, result: SweepResult,
          boxes: dict[str, BoxItem], clean: bool = False) -> bool:
    """Warnings an earlier sweep decided and did not confirm (its push failed, or it died after the
    claim: owed once the claim's lease is over) are sent now, with the boxes decided then, whether
    or not the client is still a recipient and the incident still live: a safety push is never
    traded for silence. True when nothing is owed any more (the incident may resolve). `clean`:
    this sweep's warnings all went out.

    Only an incident whose `owed_since` is set can owe anything, so a quiet sweep reads no clients.
    """
    item = inc.item
    if item.storm or item.owed_since is None:
        return True  # (an area outage's pending claims are sent again by storm.warn_area)
    if clean and int(item.owed_since) == at_ms:
        _nothing_owed(item)  # set by this sweep, whose every claim was confirmed
        return True
    ok = True
    rows = [r for r in IncidentClientItem.rows(item.pk) if r.pending_at is not None]
    need = sorted({r.box_id for r in rows} - set(boxes))
    if need:
        boxes.update({b.box_id: b for b in boxes_of(need)})
    for old in rows:
        if storm.leased(old, at_ms):
            ok = False  # claimed by this sweep or an overlapping one: sent by it, or owed after the lease
            continue
        box = boxes.get(old.box_id)
        binding = None if box is None else next(
            (b for b in bindings_of_box(old.box_id) if b.client_id == old.client_id and b.enabled), None)
        if box is None or binding is None or not group:
            storm.confirm_told(old)  # unbound since: nobody to tell
            continue
        # what was decided: the members up to the claim's number (not one that joined since)
        owed = [c for c in group if c.box_id in inc.members and inc.members[c.box_id].seq <= int(old.told_upto)]
        owed = owed or list(group)
        d = min(geo.distance_m((box.lat, box.lng), (c.lat, c.lng)) for c in owed)
        record = IncidentClientItem(
            *IncidentClientItem.key(inc.incident_id, old.client_id), client_id=old.client_id, box_id=old.box_id,
            told_upto=old.told_upto, content_hash=old.content_hash, sends=int(old.sends) + 1,
            updated_at=at_ms, expires_at=old.expires_at)
        if not storm.claim_told(record, old):
            ok = False  # an overlapping sweep took it
            continue
        report = send(sns, [binding], neighbour_outage_notification(box, d, owed, item))
        if report.failed:
            ok = False
            result.failed.extend(report.failed)
            storm.release(record)
            continue
        storm.confirm_told(record)
        if report.sent:
            result.notified.setdefault(inc.incident_id, []).append(old.client_id)
    if ok:
        _nothing_owed(item)
    return ok


def _nothing_owed(item: IncidentItem) -> None:
    try:
        item.update(actions=[IncidentItem.owed_since.remove()])  # optimistic lock on `revision`
    except UpdateError as exc:
        if not condition_failed(exc):
            raise  # changed by another sweep meanwhile: the next sweep looks again


def _join(group: list[Candidate], incidents: dict[str, Incident], at_ms: int, settings: Settings,
          result: SweepResult) -> Incident | None:
    """A cluster with a new drop: grow the incident(s) it touches (merging into the oldest) or open one."""
    touched = sorted({c.incident for c in group if c.incident}, key=lambda i: (int(incidents[i].item.opened_at), i))
    first = group[0]
    # deterministic id: a schedule delivered twice opens the same incident, once
    incident_id = f"{first.offline_at:013d}-{first.box_id}"
    if touched:
        inc = incidents[touched[0]]
    elif incident_id in incidents:
        # opened by a sweep that died before writing its members: this one finishes it
        inc = incidents[incident_id]
    else:
        inc = Incident(IncidentItem(*IncidentItem.key(incident_id), incident_id=incident_id, state="open",
                                    open_key=OPEN, member_count=0, next_seq=0, announced_upto=0,
                                    opened_at=first.offline_at, updated_at=at_ms), {}, new=True)
    in_group = {c.box_id for c in group}
    # members of an incident none of whose members are linked (a late connect showed it): only
    # those linked to the drop that joins now stay (the group holds every episode linked to it)
    stale = sorted(b for b in inc.members if b not in in_group) if touched and inc.item.unlinked else []
    members = {b: Member(m.t, m.seq, m.version, set(m.versions)) for b, m in inc.members.items() if b not in stale}
    seq = int(inc.item.next_seq)
    joining: list[tuple[int, str, int, int]] = []  # (t, box, version, seq of the merged incident)
    for other in touched[1:]:  # merged incidents' episodes join this one
        for box_id, m in incidents[other].members.items():
            if incidents[other].item.unlinked and box_id not in in_group:
                continue
            for v in (m.versions or {m.version or 0}):
                joining.append((m.t, box_id, v, m.seq))
    joining.sort(key=lambda j: (j[3], j[0], j[1]))
    for c in group:
        joining.append((c.offline_at, c.box_id, c.version, 0))
    grew = False
    for t, box_id, version, _ in joining:
        cur = members.get(box_id)
        if cur is not None and (version in cur.versions or (not cur.versions and cur.t == t)):
            continue
        grew = True
        if cur is None:
            seq += 1
            members[box_id] = Member(t, seq, version, {version})
            continue
        cur.versions.add(version)
        if cur.version is None or version > cur.version:
            # a member box in a later episode: news again (a new number), the earlier one is kept
            seq += 1
            cur.t, cur.seq, cur.version = t, seq, version
    if not inc.new and len(touched) == 1 and not grew and not stale:
        return inc  # nothing joined: nothing to write
    item = inc.item
    item.next_seq, item.member_count, item.unlinked = seq, len(members), None
    item.opened_at = min([int(item.opened_at)] + [c.offline_at for c in group])
    item.updated_at = at_ms
    try:
        item.save()  # optimistic lock on `revision` (and "does not exist yet" for a new one)
    except PutError as exc:
        if not condition_failed(exc):
            raise
        return None  # an overlapping sweep got there first: the next sweep sees its result
    # after the claim above; a crash before this line leaves episodes that join again next sweep
    _write_members(inc.incident_id, {b: m for b, m in members.items() if inc.members.get(b) != m})
    if stale:
        with IncidentMemberItem.batch_write() as batch:
            for b in stale:
                batch.delete(IncidentMemberItem(*IncidentMemberItem.key(inc.incident_id, b)))
        result.unlinked.setdefault(inc.incident_id, []).extend(stale)
    inc.members, inc.changed = members, True
    (result.opened if inc.new else result.updated).append(inc.incident_id)
    incidents[inc.incident_id] = inc
    return inc


def _due_checks(drops: list[ArrivalEntry], at_ms: int, settings: Settings) -> list[tuple[ArrivalEntry, int]]:
    """The unclean drops whose next late third-alarm check is due (oldest first, at most
    LATE_CHECKS_PER_SWEEP), with the check level it reaches."""
    first, second = late_checks_ms(settings)
    due: list[tuple[ArrivalEntry, int]] = []
    for d in drops:
        level = 2 if int(d.arrived_at) + second <= at_ms else 1 if int(d.arrived_at) + first <= at_ms else 0
        if not d.clean and level > int(d.alarm_checks or 0):
            due.append((d, level))
    return due[:LATE_CHECKS_PER_SWEEP]


def _late_third_alarms(due: list[tuple[ArrivalEntry, int]], boxes: dict[str, BoxItem], settings: Settings,
                       sns: SNSClient, idempotency: Idempotency, result: SweepResult) -> None:
    """Twice per drop, after its arrival: an alarm received before the drop but stored after it was
    processed (a concurrent or retried AlarmIngest), and any third alarm a failure left unfinished.

    Two or three requests per drop; an area outage of thousands would hold the sweep past its
    timeout, so a sweep checks at most LATE_CHECKS_PER_SWEEP (oldest first) and the next goes on.
    """
    # boto3 comes with it: see boxwatch.idempotency
    from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError

    checked: list[ArrivalEntry] = []
    for d, level in due:
        if d.box_id not in boxes:
            continue
        reports: dict[str, SendReport] = {}
        drop = Drop(d.box_id, int(d.timestamp), int(d.version), d.reason)
        try:
            if offline_after_alarm(boxes[d.box_id], drop, settings, sns, idempotency, reports) is not None:
                result.third_alarms.append(d.box_id)
        except (ThirdAlarmFailed, IdempotencyAlreadyInProgressError) as exc:
            result.failed.extend([f for r in reports.values() for f in r.failed] or [(d.box_id, type(exc).__name__)])
            continue  # checked again next sweep
        d.alarm_checks = level
        checked.append(d)
    with ArrivalEntry.batch_write() as batch:  # the sweep alone updates arrival entries after they are written
        for d in checked:
            batch.save(d)


# -------------------------------------------------------------------- fan-out
def _fans_out(inc: Incident, settings: Settings) -> bool:
    """Are this incident's warnings sent by OutageNotify workers, part by part?"""
    return bool(settings.outage_parts_queue) and len(inc.members) >= settings.sweep_fan_out_members


def plan_parts(group: Sequence[Candidate], settings: Settings) -> dict[str, tuple[list[str], list[str]]]:
    """The area parts of an incident's warnings: H3 parent (at sweep_part_res) -> (the area cells of
    that parent that may hold a recipient, the cells holding members within reach of them).

    Every cell within the radius of a member is in some part, once; a part reads its own cells
    (recipients) and the member cells near them (distances), so a cluster crossing a part's border
    is told whole by each side, and each client once (the claim, see _warn)."""
    res, part_res = settings.area_res, settings.sweep_part_res
    member_cells = sorted({geo.cell_of(c.lat, c.lng, res) for c in group})
    near: dict[str, set[str]] = defaultdict(set)  # cell that may hold a recipient -> member cells in reach
    for mc in member_cells:
        near[mc].add(mc)
        for ring in geo.reach(mc, settings.outage_radius_m):
            for cell in ring:
                near[cell].add(mc)
    parts: dict[str, list[str]] = defaultdict(list)
    for cell in sorted(near):
        parts[geo.parent_of(cell, part_res)].append(cell)
    return {p: (cells, sorted(set().union(*(near[c] for c in cells)))) for p, cells in sorted(parts.items())}


def _fan_out(inc: Incident, group: Sequence[Candidate], open_count: int, at_ms: int, settings: Settings,
             sqs: SQSClient) -> int:
    """Send the incident's warnings to OutageNotify, one message per part (10 per request); the
    number of parts. A message SQS refuses fails the sweep: its retry sends the parts again (the
    incident is not announced yet) and each client's claim keeps the second telling out."""
    extent = Extent.of(group)
    seq = max(m.seq for m in inc.members.values())
    bodies = [json.dumps({"incident": inc.incident_id, "at_ms": at_ms, "part": part, "cells": cells,
                          "member_cells": member_cells, "seq": seq, "count": extent.count, "open_count": open_count,
                          "first_offline_at": extent.first, "last_offline_at": extent.last})
              for part, (cells, member_cells) in plan_parts(group, settings).items()]
    for i in range(0, len(bodies), 10):
        sent = sqs.send_message_batch(QueueUrl=settings.outage_parts_queue, Entries=[
            {"Id": str(j), "MessageBody": body} for j, body in enumerate(bodies[i:i + 10])])
        if sent.get("Failed"):
            raise RuntimeError(f"parts of incident {inc.incident_id} not queued: {sent['Failed'][:3]}")
    return len(bodies)


def warn_part(part: OutagePart, settings: Settings, sns: SNSClient) -> SweepResult:
    """OutageNotify: tell the clients of the online boxes in one part of a large incident, as the
    sweep at `part.at_ms` decided it (the same warnings, claims and fourth-alarm lives as _warn).

    Reads the incident, the boxes of the part's cells, then of the member cells within reach of its
    online boxes (one Query a cell, in parallel): the nearest member of every online box in the
    part is among those (a part inside a blackout, with no box online, reads no more); then
    the member rows of just those boxes that may be members (offline, or back since the incident
    began). What it reads grows with the part, not with the incident. A part whose incident is
    resolved meanwhile tells nobody (its all-clear was decided)."""
    result = SweepResult(part.at_ms)
    try:
        item = IncidentItem.get(*IncidentItem.key(part.incident), consistent_read=True)
    except IncidentItem.DoesNotExist:
        return result
    if item.state != "open":
        return result
    def cells(keys: set[str]) -> list[BoxItem]:
        return read_all(sorted(keys), lambda cell: list(BoxItem.by_area_cell.query(cell)))

    own = set(part.cells)
    found = cells(own)
    # then the member cells within reach of its online boxes: none inside a blackout, where no box is online
    near = {c for b in found if b.online for ring in geo.reach(b.area_cell, settings.outage_radius_m) for c in ring}
    found += cells((near & set(part.member_cells)) - own)
    boxes = {b.box_id: b for b in found}
    maybe = [b.box_id for b in found if not b.online or int(b.status_since or 0) >= int(item.opened_at)]
    rows = read_all(chunked(sorted(maybe), WRITE_CHUNK),
                    lambda chunk: list(IncidentMemberItem.some(part.incident, chunk).values()))
    members = {r.box_id: Member(int(r.t), int(r.seq), None if r.version is None else int(r.version),
                                {int(v) for v in (r.versions or [])}) for r in rows}
    inc = Incident(item, members)
    only = [b for b in found if b.area_cell in own and b.online and b.box_id not in members]
    group = _group(inc, boxes)
    if not only or not group:
        return result
    _warn(inc, group, part.at_ms, settings, sns, result, boxes, only=only,
          extent=Extent(part.count, part.first_offline_at, part.last_offline_at), open_count=part.open_count,
          seq=part.seq)
    return result


def sweep(at_ms: int, settings: Settings, sns: SNSClient, idempotency: Idempotency,
          sqs: SQSClient | None = None) -> SweepResult:
    """One sweep at event time `at_ms`; its reads follow the boxes that changed state, not the fleet.
    `sqs`: where a large incident's warnings fan out to (settings.outage_parts_queue)."""
    result = SweepResult(at_ms)
    drops = sorted(recent_arrivals(at_ms, settings, "D"), key=lambda a: (int(a.arrived_at), a.sk))
    incidents = open_incidents()
    eval_from = at_ms - evaluate_window_ms(settings)

    def in_open(c: Candidate) -> str | None:
        return next((i for i, inc in incidents.items() if inc.holds(c)), None)

    # a late connect may show that an incident's members were not all linked: decided first, so that
    # the drops below cluster with what is left (and with the members it freed)
    areas = _areas(incidents)
    connects = _near_areas([a for a in recent_arrivals(at_ms, settings, "C") if int(a.arrived_at) > eval_from],
                           areas) if areas else []
    ids = sorted({b for inc in incidents.values() for b in inc.members} | {a.box_id for a in connects})
    boxes = {b.box_id: b for b in boxes_of(ids)}
    for old in sorted(list(incidents.values()), key=lambda i: i.incident_id):
        for part in _unlink(old, boxes, connects, settings, at_ms, result):
            incidents[part.incident_id] = part

    # drops to cluster: arrived lately, not already in an open incident
    fresh = [d for d in drops if int(d.arrived_at) > eval_from
             and in_open(Candidate(d.box_id, "", 0, 0, int(d.timestamp), version=int(d.version))) is None]
    episodes = episodes_near(fresh, at_ms, settings) if fresh else {}
    result.candidates = len(episodes)
    fresh_keys = {(d.box_id, int(d.version)) for d in fresh}
    groups = [g for g in cluster(list(episodes.values()), settings.outage_radius_m, settings.outage_max_gap_s)
              if len({c.box_id for c in g}) >= 2 and any(c.key in fresh_keys for c in g)]
    outside = []
    for g in groups:
        for c in g:
            c.incident = in_open(c)
            if c.incident is None:
                outside.append(c)
    for key, incident_id in _resolved_incidents(outside, incidents).items():
        episodes[key].incident = incident_id
    merged: dict[str, str] = {}
    for group in groups:
        for c in group:  # an incident merged earlier in this sweep lives on in its survivor
            while c.incident in merged:
                c.incident = merged[c.incident]
        result.clusters.append(sorted({c.box_id for c in group}))
        inc = _join(group, incidents, at_ms, settings, result)
        if inc is None:
            continue
        for other in sorted({c.incident for c in group if c.incident and c.incident != inc.incident_id}):
            merged[other] = inc.incident_id
            gone = incidents.pop(other)
            was_open = gone.item.state == "open"
            if _resolve(gone, at_ms, {}, merged_into=inc.incident_id) and was_open:
                result.resolved.append(other)

    # the boxes involved: members (liveness, positions), boxes back online (new recipients), late checks;
    # connects matter only next to an open incident's area (new recipients): none read without one
    due = _due_checks(drops, at_ms, settings)
    more = sorted(({b for inc in incidents.values() for b in inc.members} | {d.box_id for d, _ in due}) - set(ids))
    if more:
        boxes.update({b.box_id: b for b in boxes_of(more)})

    for inc in sorted(incidents.values(), key=lambda i: i.incident_id):
        if not inc.members and at_ms - int(inc.item.updated_at) <= evaluate_window_ms(settings):
            continue  # opened by a sweep that died before its members: the next sweep's drops finish it
        live = any(_still_open(m, boxes.get(b)) for b, m in inc.members.items())
        group = _group(inc, boxes)
        if not live:
            if inc.new:
                if _resolve(inc, at_ms, boxes, blip=True):
                    result.blips.append(inc.incident_id)
            elif (inc.item.state == "open" and _owed(inc, group, at_ms, sns, result, boxes)
                  and _all_clear(inc, at_ms, boxes, sns, result) and _resolve(inc, at_ms, boxes)):
                result.resolved.append(inc.incident_id)
                if not inc.item.storm:  # a storm's clients had their area all-clear above
                    alarm_life.all_clear(inc.item, sorted(inc.members), boxes, at_ms, settings, sns)
            elif inc.changed:  # a resolved incident grown by a late drop, still all back: recorded
                _resolve(inc, at_ms, boxes)
            continue
        if not group:
            continue
        if inc.item.unlinked:
            # no two of its members are linked: no outage to warn of, only what was owed before
            _owed(inc, group, at_ms, sns, result, boxes)
            continue
        group_seq = max(m.seq for m in inc.members.values())
        became_storm = False
        if not inc.item.storm and (inc.changed or int(inc.item.announced_upto) < group_seq):
            test = storm.assess([c for c in group if _still_open(inc.members[c.box_id], boxes.get(c.box_id))],
                                settings)
            if test is not None and test.is_storm(settings):
                storm.mark(inc.item, test, at_ms, settings)
                became_storm = True
                result.storms.append(inc.incident_id)
        # (an area never saved: the sweep that grew it died before this write)
        if inc.item.state != "open" or inc.changed or became_storm or inc.item.center_lat is None:
            reopened = inc.item.state != "open"  # a resolved incident that a late drop made live again
            item = inc.item
            item.state, item.open_key, item.expires_at, item.resolved_at, item.blip = "open", OPEN, None, None, None
            item.center_lat, item.center_lng, item.radius_m = _area(group, settings)
            try:
                item.save()
            except PutError as exc:
                if not condition_failed(exc):
                    raise
                continue
            if reopened:
                _write_members(inc.incident_id, inc.members)  # no TTL while open
        fanned = False
        if inc.changed or int(inc.item.announced_upto) < group_seq:
            if sqs is not None and _fans_out(inc, settings):
                # decided here, told by the workers: announced once the parts are queued (a part that
                # fails is retried by SQS; a push that fails is owed, as below)
                open_now = sum(_still_open(inc.members[c.box_id], boxes.get(c.box_id)) for c in group)
                result.parts[inc.incident_id] = _fan_out(inc, group, open_now, at_ms, settings, sqs)
                ok = fanned = True
            else:
                ok = _warn(inc, group, at_ms, settings, sns, result, boxes)
        else:
            # unchanged: only boxes that came online next to it may have clients to tell
            lat, lng, radius = (float(inc.item.center_lat or 0), float(inc.item.center_lng or 0),
                                float(inc.item.radius_m or 0))
            back = [boxes[a.box_id] for a in connects if a.box_id in boxes and a.box_id not in inc.members
                    and geo.distance_m((lat, lng), (float(a.lat), float(a.lng))) <= radius]
            ok = _warn(inc, group, at_ms, settings, sns, result, boxes, only=back) if back else True
        ok = _owed(inc, group, at_ms, sns, result, boxes, clean=ok and not fanned) and ok
        if ok and int(inc.item.announced_upto) < group_seq:
            try:
                inc.item.update(actions=[IncidentItem.announced_upto.set(group_seq)])
            except UpdateError as exc:
                if not condition_failed(exc):
                    raise
    # after the clusters: the fourth alarm must not wait behind a long list of late checks
    _late_third_alarms(due, boxes, settings, sns, idempotency, result)
    return result
