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

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from pynamodb.exceptions import PutError, UpdateError

from boxwatch import geo
from boxwatch.incidents import (
    INCIDENT_DAYS,
    OPEN,
    WRITE_CHUNK,
    Candidate,
    Extent,
    Incident,
    Member,
    SweepResult,
    boxes_of,
    chunked,
    group_of,
    members_of,
    read_all,
    still_open,
)
from boxwatch.models import (
    ARRIVAL_BUCKET_MS,
    INDEX_SHARDS,
    OFFLINE_BUCKET_MS,
    ArrivalEntry,
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
from boxwatch.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

    from boxwatch.idempotency import Idempotency
    from boxwatch.notify import SendReport

LATE_CHECKS_PER_SWEEP = 2_000  # ~4,000 requests at most, well inside the sweep's timeout
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


# -------------------------------------------------------------------- incidents


def open_incidents() -> dict[str, Incident]:
    """The open incidents (sparse index) and their members: one Query each, paged by DynamoDB."""
    return {item.incident_id: Incident(item, members_of(item)) for item in IncidentItem.open_incidents.query(OPEN)}


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


def _write_pointers(incident_id: str, members: dict[str, Member], at_ms: int) -> None:
    """Each member episode -> its incident, for drops that arrive after the incident resolved."""
    from boxwatch.network import LIFECYCLE_DAYS  # the sweep's alone: OutageNotify never loads network

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
            known[incident_id] = Incident(item, members_of(item))
        if incident_id in known:
            out[key] = incident_id
    return out


# -------------------------------------------------------------------- reads


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


# -------------------------------------------------------------------- the sweep


def _area(group: Sequence[Candidate], settings: Settings) -> tuple[float, float, float]:
    """Center of the member boxes and the radius within which neighbours were warned."""
    lat = sum(c.lat for c in group) / len(group)
    lng = sum(c.lng for c in group) / len(group)
    spread = max(geo.distance_m((lat, lng), (c.lat, c.lng)) for c in group)
    return lat, lng, round(spread + settings.outage_radius_m, 1)


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

    from boxwatch.network import Drop, ThirdAlarmFailed, offline_after_alarm

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
    is told whole by each side, and each client once (the claim, see outage_notify.warn)."""
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

    if incidents:  # what tells and what tests a storm load only then: a quiet sweep never does
        from boxwatch import alarm_life, outage_notify, storm
    for inc in sorted(incidents.values(), key=lambda i: i.incident_id):
        if not inc.members and at_ms - int(inc.item.updated_at) <= evaluate_window_ms(settings):
            continue  # opened by a sweep that died before its members: the next sweep's drops finish it
        live = any(still_open(m, boxes.get(b)) for b, m in inc.members.items())
        group = group_of(inc, boxes)
        if not live:
            if inc.new:
                if _resolve(inc, at_ms, boxes, blip=True):
                    result.blips.append(inc.incident_id)
            elif (inc.item.state == "open" and outage_notify.send_owed(inc, group, at_ms, sns, result, boxes)
                  and outage_notify.area_all_clear(inc, at_ms, boxes, sns, result) and _resolve(inc, at_ms, boxes)):
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
            outage_notify.send_owed(inc, group, at_ms, sns, result, boxes)
            continue
        group_seq = max(m.seq for m in inc.members.values())
        became_storm = False
        if not inc.item.storm and (inc.changed or int(inc.item.announced_upto) < group_seq):
            test = storm.assess([c for c in group if still_open(inc.members[c.box_id], boxes.get(c.box_id))],
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
                open_now = sum(still_open(inc.members[c.box_id], boxes.get(c.box_id)) for c in group)
                result.parts[inc.incident_id] = _fan_out(inc, group, open_now, at_ms, settings, sqs)
                ok = fanned = True
            else:
                ok = outage_notify.warn(inc, group, at_ms, settings, sns, result, boxes)
        else:
            # unchanged: only boxes that came online next to it may have clients to tell
            lat, lng, radius = (float(inc.item.center_lat or 0), float(inc.item.center_lng or 0),
                                float(inc.item.radius_m or 0))
            back = [boxes[a.box_id] for a in connects if a.box_id in boxes and a.box_id not in inc.members
                    and geo.distance_m((lat, lng), (float(a.lat), float(a.lng))) <= radius]
            ok = outage_notify.warn(inc, group, at_ms, settings, sns, result, boxes, only=back) if back else True
        ok = outage_notify.send_owed(inc, group, at_ms, sns, result, boxes, clean=ok and not fanned) and ok
        if ok and int(inc.item.announced_upto) < group_seq:
            try:
                inc.item.update(actions=[IncidentItem.announced_upto.set(group_seq)])
            except UpdateError as exc:
                if not condition_failed(exc):
                    raise
    # after the clusters: the fourth alarm must not wait behind a long list of late checks
    _late_third_alarms(due, boxes, settings, sns, idempotency, result)
    return result
