"""Holds the pushes of a replay run against the model.

A push is `{"step": i, "client": c, "kind": k, "data": {...}}` (the step of the delivery during
which the handler published it; data = the push's machine-readable part). Per kind:

- every kind but neighbour_outage: a push is matched on (kind, client, slot) to an expectation
  whose step range admits it (earliest deadline first); a push that matches none is FORBIDDEN,
  or TWICE when an expectation with that slot was already taken, or LATE/EARLY when only the
  step is off; an expectation left unmatched is MISSING; a matched push must carry the content;
- area_outage / area_all_clear (storm mode): matched like the above, slot () per client and storm;
  a cluster that is a storm at a sweep asks for no neighbour_outage and allows none;
- neighbour_outage: a push at a sweep must name at least one box of a live cluster that its
  client is eligible for and was not told about, and nothing outside that cluster but boxes it
  was told about; every eligible client of a live cluster must, by the end of that sweep, have
  a push about one of the cluster's drops. With faults, a push may fit such a cluster of an
  earlier sweep instead (a failed warning sent later).
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tests.model.model import EDGE_M, KINDS, LISTED, Cluster, Expectation, Model
from tests.model.world import env_choice


@dataclass(frozen=True)
class Disagreement:
    kind: str
    what: str  # missing | forbidden | twice | late | early | content:<field>
    client: str
    detail: str

    @property
    def cls(self) -> str:
        """The class of a disagreement (what the shrinker keeps failing)."""
        return f"{self.kind}:{self.what}"

    def __str__(self) -> str:
        return f"[{self.cls}] {self.client}: {self.detail}"


def selected_kinds() -> tuple[str, ...]:
    """BOXWATCH_MODEL_KINDS=alarm,nearby_update checks only those kinds (default: all)."""
    return env_choice("BOXWATCH_MODEL_KINDS", KINDS)


def slot_of(kind: str, data: dict[str, Any], command_keys: dict[str, str]) -> tuple[Any, ...] | None:
    """The slot of a push, from its data (None: it does not carry what its kind must)."""
    try:
        if kind == "alarm" or kind == "same_cause_nearby":
            return (data["box"], int(data["seq"]), int(data["alarm_time"]))
        if kind == "nearby_update":
            return (data["cause"], (data.get("boxes") or [None])[0])
        if kind == "alarm_summary":
            return (data["box"], data["cause"])
        if kind == "offline_after_alarm":
            return (data["box"], int(data["alarm_seq"]), int(data["alarm_time"]))
        if kind in ("reminder", "acknowledged", "alarm_cleared", "box_back_online"):
            return (data["box"], data["cause"], int(data["first_at"]))
        if kind == "escalation":  # an SMS: its reference names the box and the alarm (first_at)
            return (data["box"], int(data["first_at"]))
        if kind in ("area_outage", "area_all_clear"):
            return ()  # once per client and storm (a client near two storms has two, either matches)
        if kind == "power_off_result":
            return (command_keys.get(str(data.get("command_id")), f"?{data.get('command_id')}"), data["status"])
    except (KeyError, TypeError, ValueError):
        return None
    return None


def content_errors(exp: Expectation, data: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, want in exp.content.items():
        if name == "nearest":  # same_cause_nearby: the nearest neighbour boxes, nearest first
            near: list[tuple[str, float]] = want
            got = list(data.get("boxes") or [])
            dist = dict(near)
            if len(got) != min(LISTED, len(near)) or len(set(got)) != len(got) or not set(got) <= set(dist):
                want_n = min(LISTED, len(near))
                out.append(("boxes", f"boxes {got}, want the {want_n} nearest of {[b for b, _ in near]}"))
            elif any(dist[a] > dist[b] + EDGE_M for a, b in itertools.pairwise(got)):
                out.append(("boxes", f"boxes {got} not nearest first ({near})"))
            elif len(near) > LISTED and max(dist[b] for b in got) > min(
                    d for b, d in near if b not in got) + EDGE_M:
                out.append(("boxes", f"boxes {got} are not the {LISTED} nearest"))
        elif name == "own":  # nearby_update: the client's own box nearest to the newcomer
            own: list[tuple[str, float]] = want
            box = data.get("box")
            mine = dict(own)
            if box not in mine or mine[box] > own[0][1] + EDGE_M:
                out.append(("box", f"box {box!r}, want the client's box nearest the newcomer: {own[0][0]}"))
        elif (name in data or name in ("count", "cause")) and data.get(name) != want:
            out.append((name, f"{name} {data.get(name)!r}, want {want!r}"))
    return out


@dataclass
class Result:
    disagreements: list[Disagreement]
    required: Counter[str]  # required pushes checked, per kind
    pushes: Counter[str]  # pushes seen, per kind

    @property
    def ok(self) -> bool:
        return not self.disagreements


def check(model: Model, pushes: list[dict[str, Any]], commands: list[dict[str, Any]] | None = None,
          kinds: tuple[str, ...] | None = None) -> Result:
    kinds = selected_kinds() if kinds is None else kinds
    command_keys = {str(c["command_id"]): str(c["key"]) for c in commands or [] if c.get("command_id")}
    out: list[Disagreement] = []
    required: Counter[str] = Counter(e.kind for e in model.expectations if e.kind in kinds)
    seen: Counter[str] = Counter(p["kind"] for p in pushes)

    groups: dict[tuple[Any, ...], list[Expectation]] = {}
    for e in model.expectations:
        groups.setdefault((e.kind, e.client, e.slot), []).append(e)
    taken: set[int] = set()
    warned: set[tuple[str, Any]] = set()  # (client, incident) told by a neighbour_outage so far
    cleared: set[tuple[str, Any]] = set()
    warned_boxes: set[tuple[Any, int]] = set()  # (box, epoch ms) a neighbour_outage named as its client's box
    reminded: set[tuple[str, Any, Any]] = set()
    for p in sorted(pushes, key=lambda p: p["step"]):
        kind, client, data, step = p["kind"], p["client"], p["data"], p["step"]
        if kind == "neighbour_outage":
            warned.add((client, data.get("incident")))
            if step < len(model.steps):
                warned_boxes.add((data.get("box"), model.start_ms + model.steps[step].ms))
        if kind == "reminder" and data.get("cause") == "neighbour_outage" and kind in kinds:
            # a fourth alarm escalates from the sweep that first warned a client of the box: ALLOWED
            # to every client of that box, once, EscalateAfterS or more after it; REQUIRED is not
            # modelled (when the system warns, and which incident it names, is its own to choose)
            box, first_at = data.get("box"), data.get("first_at")
            reminder_key = (client, box, first_at)
            at_ms = model.start_ms + model.steps[step].ms if step < len(model.steps) else None
            if (box, first_at) not in warned_boxes or client not in model.clients(str(box)):
                out.append(Disagreement(kind, "forbidden", client, f"neighbour_outage reminder of {box} "
                                        f"at {first_at}: nobody was warned about that box then"))
            elif at_ms is None or at_ms < int(first_at) + model.settings.escalate_after_ms:
                out.append(Disagreement(kind, "early", client, f"neighbour_outage reminder of {box} at step {step}"))
            elif reminder_key in reminded:
                out.append(Disagreement(kind, "twice", client, f"neighbour_outage reminder of {box} again"))
            reminded.add(reminder_key)
            continue
        if kind == "escalation" and kind in kinds and not groups.get((kind, client, slot_of(kind, data, {}))):
            # a fourth alarm's SMS step: ALLOWED to each manager of the warned box, once, 2 x
            # EscalateAfterS or more after the warning (REQUIRED is not modelled, as its reminder)
            box, first_at = data.get("box"), data.get("first_at")
            sms_key = (f"sms:{client}", box, first_at)
            at_ms = model.start_ms + model.steps[step].ms if step < len(model.steps) else None
            if (box, first_at) not in warned_boxes or client not in model.managers(str(box)):
                out.append(Disagreement(kind, "forbidden", client, f"escalation SMS of {box} at {first_at}: "
                                        "no alarm of that box asks for one"))
            elif at_ms is None or at_ms < int(first_at) + 2 * model.settings.escalate_after_ms:
                out.append(Disagreement(kind, "early", client, f"neighbour_outage SMS of {box} at step {step}"))
            elif sms_key in reminded:
                out.append(Disagreement(kind, "twice", client, f"neighbour_outage SMS of {box} again"))
            reminded.add(sms_key)
            continue
        if kind == "all_clear" and kind in kinds:
            # ALLOWED to a client told about that incident, once; REQUIRED is not modelled (the
            # incident a cluster became is the system's to name)
            key = (client, data.get("incident"))
            if key not in warned:
                out.append(Disagreement(kind, "forbidden", client, f"all_clear of {key[1]} never warned of it"))
            elif key in cleared:
                out.append(Disagreement(kind, "twice", client, f"all_clear of {key[1]} again at step {step}"))
            cleared.add(key)
            continue
        if kind == "neighbour_outage" or (kind not in kinds and kind in KINDS):
            continue
        where = f"step {step} ({model.steps[step].t:g} s)" if step < len(model.steps) else f"step {step}"
        if kind not in KINDS:
            out.append(Disagreement(str(kind), "forbidden", client, f"unknown push kind at {where}: {data}"))
            continue
        slot = slot_of(kind, data, command_keys)
        group = groups.get((kind, client, slot), [])
        fits = [e for e in group if id(e) not in taken and e.first_step <= step
                and (e.last_step is None or step <= e.last_step)]
        if fits:
            e = min(fits, key=lambda e: (e.last_step if e.last_step is not None else 1 << 62, e.first_step))
            taken.add(id(e))
            for name, detail in content_errors(e, data):
                out.append(Disagreement(kind, f"content:{name}", client, f"{detail} at {where} ({e.why})"))
            continue
        free = [e for e in group if id(e) not in taken]
        if free:  # the right push at the wrong step
            e = min(free, key=lambda e: e.first_step)
            taken.add(id(e))
            what = "early" if step < e.first_step else "late"
            due = f"steps {e.first_step}..{e.last_step}" if e.last_step != e.first_step else f"step {e.first_step}"
            out.append(Disagreement(kind, what, client, f"{slot} pushed at {where}, due at {due} ({e.why})"))
        elif group:
            out.append(Disagreement(kind, "twice", client, f"{slot} pushed again at {where} ({group[0].why})"))
        else:
            out.append(Disagreement(kind, "forbidden", client, f"{slot} at {where}: no claim asks for it; data {data}"))
    for e in model.expectations:
        if e.kind in kinds and id(e) not in taken:
            out.append(Disagreement(e.kind, "missing", e.client, f"{e.slot} due at step {e.first_step} "
                                    f"({model.steps[e.first_step].t:g} s): {e.why}"))
    if "neighbour_outage" in kinds:
        required["neighbour_outage"] = 0
        out += _check_outage(model, [p for p in pushes if p["kind"] == "neighbour_outage"], required)
    return Result(out, required, seen)


def _check_outage(model: Model, pushes: list[dict[str, Any]], required: Counter[str]) -> list[Disagreement]:
    out: list[Disagreement] = []
    told: dict[str, list[tuple[frozenset[tuple[str, int, int]], frozenset[str]]]] = {}  # client -> (drops, named)
    per_sweep: set[tuple[str, int, frozenset[tuple[str, int, int]]]] = set()

    def told_about(client: str, cluster: Cluster) -> set[str]:
        return {b for drops, named in told.get(client, []) if drops & cluster.episodes for b in named}

    for p in sorted(pushes, key=lambda p: p["step"]):
        client, data, step = p["client"], p["data"], p["step"]
        named = frozenset(data.get("offline_boxes") or data.get("boxes") or [])
        where = f"step {step} ({model.steps[step].t:g} s)" if step < len(model.steps) else f"step {step}"
        if step not in model.sweeps:
            out.append(Disagreement("neighbour_outage", "forbidden", client,
                                    f"{sorted(named)} at {where}: not a sweep"))
            continue
        live = [c for c in model.sweeps[step] if c.live and not c.storm]
        mine = [c for c in live if client in c.eligible]
        fits = [c for c in mine
                if named <= c.boxes | told_about(client, c) and named & (c.boxes - told_about(client, c))]
        if not fits and model.faults:
            # a warning an earlier sweep decided and failed to send comes later, even once that
            # cluster is over or the client's box is no longer a neighbour
            fits = [c for s in sorted(model.sweeps, reverse=True) if s < step for c in model.sweeps[s]
                    if c.live and not c.storm and client in c.eligible
                    and named <= c.boxes | told_about(client, c) and named & (c.boxes - told_about(client, c))]
        if not fits:
            if not live:
                why = "no live cluster"
            elif not mine:
                why = f"client not eligible (live clusters {[sorted(c.boxes) for c in live]})"
            else:
                why = "; ".join(f"cluster {sorted(c.boxes)} told {sorted(told_about(client, c))}" for c in mine)
            out.append(Disagreement("neighbour_outage", "forbidden", client, f"{sorted(named)} at {where}: {why}"))
            continue
        cluster = fits[0]
        if (client, step, cluster.episodes) in per_sweep:
            out.append(Disagreement("neighbour_outage", "twice", client,
                                    f"a second update about {sorted(cluster.boxes)} in the sweep at {where}"))
            continue
        per_sweep.add((client, step, cluster.episodes))
        if data.get("box") not in cluster.eligible[client]:
            want = sorted(cluster.eligible[client])
            out.append(Disagreement("neighbour_outage", "content:box", client,
                                    f"box {data.get('box')!r} at {where}, want one of {want}"))
        drops = frozenset(e for e in cluster.episodes if e[0] in named)
        told.setdefault(client, []).append((drops, named))

    pushed_at: dict[str, list[tuple[int, frozenset[tuple[str, int, int]]]]] = {}
    for p in pushes:
        step = p["step"]
        named = frozenset(p["data"].get("offline_boxes") or p["data"].get("boxes") or [])
        drops = frozenset(e for c in model.sweeps.get(step, []) for e in c.episodes if e[0] in named)
        pushed_at.setdefault(p["client"], []).append((step, drops))
    reported: set[tuple[str, frozenset[tuple[str, int, int]]]] = set()
    obligations: set[tuple[str, frozenset[tuple[str, int, int]]]] = set()  # (client, cluster): counted once
    for step, clusters in sorted(model.sweeps.items()):
        for cluster in clusters:
            if not cluster.live or cluster.storm:
                continue
            for client in sorted(cluster.eligible):
                obligations.add((client, cluster.episodes))
                ok = any((model.faults or s <= step) and drops & cluster.episodes
                         for s, drops in pushed_at.get(client, []))
                if not ok and (client, cluster.episodes) not in reported:
                    reported.add((client, cluster.episodes))
                    out.append(Disagreement(
                        "neighbour_outage", "missing", client,
                        f"live cluster {sorted(cluster.boxes)} (drops {sorted(cluster.episodes)}) at the sweep of step "
                        f"{step} ({model.steps[step].t:g} s); eligible through {sorted(cluster.eligible[client])}"))
    required["neighbour_outage"] = len(obligations)
    return out
