"""The reference model: docs/claims.md, rule by rule, as plainly as it can be written.

Given a scenario (the replay YAML as a dict), `Model(scenario)` walks replay's delivery order
(world.timeline) keeping the full history in memory, and states for every push kind:

- `expectations`: the pushes the claims REQUIRE, each for one client, with the step that must
  send it (`first_step`; `last_step` None = any later step, used when faults may delay it);
- `sweeps`: for the fourth alarm, every offline cluster as each sweep sees it (a push naming a
  live cluster's boxes is REQUIRED for its eligible clients, growth updates are ALLOWED);
- everything else is FORBIDDEN (check.py matches a replay report against this).

Brute force over all pairs, exact great-circle distances; nothing is indexed or cached.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.model.world import (
    CAUSES,
    CLEAN_REASON,
    COMMAND_SWEEP,
    DEFAULT_REASON,
    FUTURE_SKEW_MS,
    OFFLINE_SWEEP,
    TEMPLATE,
    Settings,
    Step,
    distance_m,
    timeline,
)

KINDS = ("alarm", "same_cause_nearby", "nearby_update", "alarm_summary", "offline_after_alarm",
         "neighbour_outage", "power_off_result", "reminder", "acknowledged", "alarm_cleared", "box_back_online",
         "all_clear", "area_outage", "area_all_clear", "escalation")
OFFLINE = "offline_after_alarm"  # a third alarm is an alarm with a life too (cause, no circuit)
DISPOSITIONS = ("real", "false_alarm", "test", "drill")
LISTED = 30  # a push lists at most the 30 nearest boxes (claims: same_cause_nearby `boxes`)
EDGE_M = 1.0  # distances this close to a radius are left to float luck: the generator avoids them
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Alarm:
    box: str
    seq: int
    cause: str
    alarm_ms: int  # box clock, relative to the scenario start
    value: float
    threshold: float
    received_ms: int  # arrival
    step: int
    held: bool

    @property
    def identity(self) -> tuple[Any, ...]:
        return (self.box, self.seq, self.cause, self.alarm_ms, self.value, self.threshold)


@dataclass(frozen=True)
class Disconnect:
    box: str
    version: int
    s_ms: int  # lifecycle timestamp
    clean: bool
    step: int


@dataclass
class Expectation:
    kind: str
    client: str
    slot: tuple[Any, ...]  # what a push of this kind to this client is matched on (check.py)
    first_step: int
    last_step: int | None  # None: any step from first_step on
    why: str
    content: dict[str, Any] = field(default_factory=dict)  # fields the push must carry


@dataclass(frozen=True)
class Cluster:
    """A connected component of linked drops, as one offline sweep sees it."""

    episodes: frozenset[tuple[str, int, int]]  # (box, version, start ms)
    boxes: frozenset[str]
    live: bool
    eligible: dict[str, frozenset[str]]  # client -> its online, non-member boxes within the radius
    storm: bool = False  # an area outage at this sweep: no neighbour_outage about it (area_outage instead)


@dataclass
class _Storm:
    """A cluster found to be an area outage, followed from sweep to sweep through its episodes."""

    episodes: set[tuple[str, int, int]]
    told: set[str] = field(default_factory=set)  # clients owed an area_outage already
    over: bool = False  # resolved: its all-clear was due


@dataclass
class Command:
    client: str
    key: str
    box: str
    requested_ms: int
    status: str = "pending"


@dataclass
class _Life:
    """One alarm of (box, cause, circuit) from its first log until the box clears it."""

    box: str
    cause: str
    circuit: str | None
    first_ms: int  # received time of the log that opened it
    count: int = 1
    acked_step: int | None = None
    cleared_step: int | None = None
    version: int = 0  # a third alarm's: the drop's version (a connect above it ends it)


@dataclass
class _Window:
    start_ms: int
    count: int = 0  # alarms of this window, pushed or held
    held: int = 0


@dataclass
class _Presence:
    applied: tuple[int, int]  # (version, 0 connected | 1 disconnected): the latest event Presence applied
    connects: dict[int, int] = field(default_factory=dict)  # version -> timestamp (first arrival)
    disconnects: dict[int, Disconnect] = field(default_factory=dict)  # version -> the drop
    auto_version: int = 0  # replay's numbering when an event names none

    @property
    def online(self) -> bool:
        return self.applied[1] == 0


class Model:
    def __init__(self, scenario: dict[str, Any], template: Path = TEMPLATE, faults: bool | None = None):
        self.scenario = scenario
        self.settings = Settings.for_scenario(scenario, template)
        self.steps: list[Step] = timeline(scenario, self.settings)
        start = scenario.get("start", DEFAULT_START)
        if isinstance(start, str):
            start = datetime.fromisoformat(start.replace("Z", "+00:00"))
        self.start_ms = int(start.timestamp() * 1000)
        # a push may come later than its trigger only when faults can delay it (a sweep retries)
        self.faults = bool(scenario.get("faults")) if faults is None else faults
        self.expectations: list[Expectation] = []
        self.sweeps: dict[int, list[Cluster]] = {}  # offline sweep step -> clusters of 2+ boxes
        self.sweep_steps: list[int] = []  # steps that run schedules (ticks and `scheduled` events)
        self.ambiguities: list[str] = []
        self.rejected: list[tuple[int, str]] = []

        self.location: dict[str, tuple[float, float]] = {}
        self.clients_of: dict[str, set[str]] = {}
        self.boxes_of: dict[str, set[str]] = {}
        self.presence: dict[str, _Presence] = {}
        self.alarms: list[Alarm] = []  # every stored alarm, in processing order
        self.windows: dict[tuple[str, str], list[_Window]] = {}  # (box, cause) -> hold windows
        self.third_told: set[tuple[Any, ...]] = set()  # alarm identities that had their third alarm
        self.update_window: dict[tuple[str, str], int] = {}  # (client, cause) -> received ms of the last update
        self.commands: dict[tuple[str, str], Command] = {}  # (client, key)
        self.by_key: dict[str, Command] = {}  # replay's key -> command (the last 2xx answer)
        self.lives: list[_Life] = []  # every alarm's life, in the order opened
        self.active: dict[tuple[str, str, str | None], _Life] = {}
        self.clears: set[tuple[Any, ...]] = set()  # clear messages stored (their identity)
        self.storms: list[_Storm] = []
        self._last_clusters: set[frozenset[tuple[str, int, int]]] = set()  # the previous sweep's clusters

        self._register()
        for step in self.steps:
            self._step(step)
        self._flood_summaries()
        self._reminders()
        self._escalations()

    # ------------------------------------------------------------------ set-up
    def _register(self) -> None:
        for raw in self.scenario.get("boxes") or []:
            box = str(raw["id"])
            self.location[box] = (float(raw["lat"]), float(raw["lng"]))
            self.clients_of.setdefault(box, set())
        for c in self.scenario.get("clients") or []:
            for box in c.get("boxes") or []:
                self.clients_of.setdefault(box, set()).add(c["id"])
                self.boxes_of.setdefault(c["id"], set()).add(box)
        mentioned = {e.get("box") for e in self.scenario.get("events") or [] if e.get("type") in ("connected",
                                                                                                   "disconnected")}
        for raw in self.scenario.get("boxes") or []:
            box = str(raw["id"])
            if raw.get("online", True) is False:
                self.presence[box] = _Presence(applied=(0, 1))  # never connected
            elif box in mentioned:  # replay connects it at t=0 with versionNumber 1
                self.presence[box] = _Presence(applied=(1, 0), connects={1: 0}, auto_version=1)
            else:
                self.presence[box] = _Presence(applied=(0, 0))  # registered: online at version 0
        for (a, pa), (b, pb) in itertools.combinations(self.location.items(), 2):
            d = distance_m(pa, pb)
            for name, r in (("neighbour", self.settings.neighbour_radius_m), ("outage", self.settings.outage_radius_m)):
                if abs(d - r) <= EDGE_M:
                    self.ambiguities.append(f"{a}-{b} are {d:.3f} m apart, within {EDGE_M} m of the {name} radius")

    def clients(self, box: str) -> list[str]:
        return sorted(self.clients_of.get(box, ()))

    def dist(self, a: str, b: str) -> float:
        return distance_m(self.location[a], self.location[b])

    def expect(self, kind: str, client: str, slot: tuple[Any, ...], step: Step, why: str,
               last_step: int | None = -1, **content: Any) -> None:
        last = step.index if last_step == -1 else last_step
        if self.faults:
            last = None
        self.expectations.append(Expectation(kind, client, slot, step.index, last, why, content))

    # ------------------------------------------------------------------ dispatch
    def _step(self, step: Step) -> None:
        if step.kind == "tick":
            self.sweep_steps.append(step.index)
            if step.function == OFFLINE_SWEEP:
                self._offline_sweep(step)
            elif step.function == COMMAND_SWEEP:
                self._command_sweep(step)
            return
        ev = step.event or {}
        kind = ev.get("type")
        if kind == "alarm":
            self._alarm(step, ev)
        elif kind == "clear":
            self._clear(step, ev)
        elif kind == "ack":
            self._ack(step, ev)
        elif kind in ("connected", "disconnected"):
            self._lifecycle(step, ev, str(kind))
        elif kind == "scheduled":  # one more delivery of every schedule
            self.sweep_steps.append(step.index)
            for function, _ in self.settings.schedules:
                if function == OFFLINE_SWEEP:
                    self._offline_sweep(step)
                elif function == COMMAND_SWEEP:
                    self._command_sweep(step)
        elif kind == "power_off":
            self._power_off(step, ev)
        elif kind == "power_state":
            self._power_state(step, ev)
        else:
            self.rejected.append((step.index, f"unknown event type {kind!r}"))

    # ------------------------------------------------------------------ first alarm, flood, second alarm
    def _alarm(self, step: Step, ev: dict[str, Any]) -> None:
        box = ev.get("box")
        if box not in self.location or "raw" in ev or ev.get("extra") or str(ev.get("client_id", box)) != box:
            self.rejected.append((step.index, "alarm refused (unknown box, spoofed or malformed)"))
            return
        seq, cause = ev.get("seq"), ev.get("cause")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1 or cause not in CAUSES:
            self.rejected.append((step.index, "alarm refused (invalid)"))
            return
        received = step.ms
        alarm_ms = round(float(ev.get("alarm_at", ev.get("t", 0))) * 1000)
        if alarm_ms > received + FUTURE_SKEW_MS or alarm_ms < received - self.settings.alarm_max_age_ms:
            self.rejected.append((step.index, "alarm refused (time out of range)"))
            return
        if alarm_ms in (received + FUTURE_SKEW_MS, received - self.settings.alarm_max_age_ms):
            self.ambiguities.append(f"step {step.index}: alarm time on the contract's acceptance edge")
        value, threshold = ev.get("value"), ev.get("threshold")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (value, threshold)):
            self.rejected.append((step.index, "alarm refused (value and threshold must be numbers)"))
            return
        value, threshold = float(value), float(threshold)  # type: ignore[arg-type]
        identity = (box, seq, cause, alarm_ms, value, threshold)
        if any(a.identity == identity for a in self.alarms):
            return  # a redelivery: nothing new stored or pushed
        if any(a.box == box and a.seq == seq and a.alarm_ms == alarm_ms for a in self.alarms):
            self.ambiguities.append(f"step {step.index}: {box} seq {seq} reused with the same alarm time "
                                    "(pushes could not tell the two alarms apart)")
        for d in self._drops(box):
            if d.step < step.index and received <= d.s_ms <= received + self.settings.offline_watch_ms:
                self.ambiguities.append(f"step {step.index}: {box}'s alarm arrives after its drop at the same instant")

        held = self._hold(box, cause, received)
        alarm = Alarm(box, seq, cause, alarm_ms, value, threshold, received, step.index, held)
        circuit = ev.get("circuit")
        life = self.active.get((box, cause, circuit))
        if life is None:  # no active alarm of (box, cause, circuit): this log opens one
            life = self.active[(box, cause, circuit)] = _Life(box, cause, circuit, received)
            self.lives.append(life)
        else:
            life.count += 1
        earlier = list(self.alarms)
        self.alarms.append(alarm)
        abs_time = self.start_ms + alarm_ms

        if not held:
            for c in self.clients(box):
                self.expect("alarm", c, (box, seq, abs_time), step, f"first alarm {box}#{seq} at step {step.index}",
                            cause=cause, value=value, threshold=threshold)

        neighbours = [a for a in earlier if a.box != box and a.cause == cause
                      and self.dist(a.box, box) <= self.settings.neighbour_radius_m
                      and abs(a.alarm_ms - alarm_ms) <= self.settings.neighbour_window_ms]
        if not neighbours:
            return
        near = sorted({a.box for a in neighbours}, key=lambda b: (self.dist(b, box), b))
        if not held:
            for c in self.clients(box):
                self.expect("same_cause_nearby", c, (box, seq, abs_time), step,
                            f"second alarm for {box}#{seq}: same {cause} at {near} (step {step.index})",
                            cause=cause, count=len(near), nearest=[(b, self.dist(b, box)) for b in near])
        # the other way: the clients of the earlier boxes hear of the newcomer, once per window
        own = set(self.clients(box))
        for c in sorted({c for b in near for c in self.clients(b)} - own):
            last = self.update_window.get((c, cause))
            if last is not None and received - last < self.settings.neighbour_window_ms:
                continue
            self.update_window[(c, cause)] = received
            mine = sorted((b for b in near if c in self.clients_of.get(b, ())), key=lambda b: (self.dist(b, box), b))
            self.expect("nearby_update", c, (cause, box), step,
                        f"nearby update to {c}: {box} raised {cause} near its {mine} (step {step.index})",
                        cause=cause, own=[(b, self.dist(b, box)) for b in mine])

    # ------------------------------------------------------------------ the alarm's life
    def _clear(self, step: Step, ev: dict[str, Any]) -> None:
        box, seq, cause = ev.get("box"), ev.get("seq"), ev.get("cause")
        if box not in self.location or isinstance(seq, bool) or not isinstance(seq, int) or seq < 1 \
                or cause not in CAUSES:
            self.rejected.append((step.index, "clear refused"))
            return
        received = step.ms
        clear_ms = round(float(ev.get("alarm_at", ev.get("t", 0))) * 1000)
        if clear_ms > received + FUTURE_SKEW_MS or clear_ms < received - self.settings.alarm_max_age_ms:
            self.rejected.append((step.index, "clear refused (time out of range)"))
            return
        identity = (box, seq, cause, clear_ms, float(ev.get("value", 0.0)), float(ev.get("threshold", 0.0)))
        if identity in self.clears:
            return  # a redelivery
        self.clears.add(identity)
        life = self.active.pop((box, cause, ev.get("circuit")), None)
        if life is None:
            return  # nothing active to clear: stored only
        life.cleared_step = step.index
        for c in self.clients(box):
            self.expect("alarm_cleared", c, (box, cause, self.start_ms + life.first_ms), step,
                        f"{box} cleared its {cause} alarm of {life.first_ms / 1000:g} s at step {step.index}",
                        count=life.count)

    def _ack(self, step: Step, ev: dict[str, Any]) -> None:
        client, box, cause = ev.get("client"), ev.get("box"), ev.get("cause")
        if box not in self.location or client not in self.clients_of.get(str(box), set()):
            self.rejected.append((step.index, "ack refused (404: unknown box or not bound)"))
            return
        mine = [x for x in self.lives if x.box == box and x.cause == cause
                and ("circuit" not in ev or x.circuit == ev["circuit"])]
        comment = ev.get("comment")
        if not mine or ev.get("disposition") not in DISPOSITIONS or (
                comment is not None and (not isinstance(comment, str) or len(comment) > 500)):
            self.rejected.append((step.index, "ack refused (no such alarm, or invalid)"))
            return
        life = max(mine, key=lambda x: x.first_ms)  # ties: the one opened first (replay: the higher id)
        if sum(1 for x in mine if x.first_ms == life.first_ms) > 1:
            self.ambiguities.append(f"step {step.index}: two {cause} alarms of {box} opened at one instant")
        if life.acked_step is not None:
            return  # acknowledged before: a repeat changes nothing
        life.acked_step = step.index
        for c in self.clients(str(box)):
            if c != client:
                self.expect("acknowledged", c, (box, cause, self.start_ms + life.first_ms), step,
                            f"{client} acknowledged {box}'s {cause} alarm at step {step.index}",
                            acked_by=client, disposition=ev.get("disposition"))

    def _step_window(self, life: _Life, due_ms: int, what: str) -> tuple[int, int] | None:
        """(first, last) sweep step of an escalation step due at `due_ms`, or None when the run ends
        first, an ack or a clear stopped it before, or one fell inside the window (ambiguous)."""
        due = [i for i in self.sweep_steps if self.steps[i].ms >= due_ms]
        if not due:
            return None
        latest = due_ms + self.settings.max_period_ms
        last = max(i for i in self.sweep_steps if self.steps[i].ms <= max(latest, self.steps[due[0]].ms))
        stops = [s for s in (life.acked_step, life.cleared_step) if s is not None]
        if stops and min(stops) < due[0]:
            return None
        if stops and min(stops) <= last:
            self.ambiguities.append(f"{life.box}'s {life.cause} alarm stopped inside its {what}'s window")
            return None
        return due[0], last

    def _reminders(self) -> None:
        """An alarm neither acknowledged nor cleared by the first sweep at or after first + E: a
        reminder to every client of its box (the SMS step: `_escalations`)."""
        for life in self.lives:
            due_ms = life.first_ms + self.settings.escalate_after_ms
            window = self._step_window(life, due_ms, "reminder")
            if window is None:
                continue
            first, last = window
            for c in self.clients(life.box):
                self.expect("reminder", c, (life.box, life.cause, self.start_ms + life.first_ms), self.steps[first],
                            f"{life.box}'s {life.cause} alarm of {life.first_ms / 1000:g} s unacknowledged at "
                            f"{due_ms / 1000:g} s", last_step=last)

    def managers(self, box: str) -> list[str]:
        """The box's escalation contacts: bound clients with role manager and an SMS number."""
        return sorted(c["id"] for c in self.scenario.get("clients") or []
                      if c.get("role") == "manager" and c.get("sms") and box in (c.get("boxes") or []))

    def _escalations(self) -> None:
        """The second step: an alarm neither acknowledged nor cleared by the first sweep at or after
        first + 2 x E gets one `escalation` SMS to each manager of its box, sent by that sweep, at
        most `sms_per_hour` per number and hour of that sweep's time (a scenario that would reach
        the cap leaves which SMS are sent to the senders' order: ambiguous, not generated)."""
        per_hour: Counter[tuple[str, int]] = Counter()
        for life in self.lives:
            due_ms = life.first_ms + 2 * self.settings.escalate_after_ms
            window = self._step_window(life, due_ms, "SMS step") if self.managers(life.box) else None
            if window is None:
                continue
            first, last = window
            hour = (self.start_ms + self.steps[first].ms) // 3_600_000
            for c in self.managers(life.box):
                per_hour[(c, hour)] += 1
                if per_hour[(c, hour)] > self.settings.sms_per_hour:
                    self.ambiguities.append(f"{c} would get more than {self.settings.sms_per_hour} SMS in an hour")
                self.expect("escalation", c, (life.box, self.start_ms + life.first_ms), self.steps[first],
                            f"{life.box}'s {life.cause} alarm of {life.first_ms / 1000:g} s unacknowledged at "
                            f"{due_ms / 1000:g} s: SMS to its manager", last_step=last)

    def _hold(self, box: str, cause: str, received: int) -> bool:
        """Flood hold-down per (box, cause): is this alarm held?"""
        windows = self.windows.setdefault((box, cause), [])
        if not windows or received >= windows[-1].start_ms + self.settings.alarm_hold_ms:
            windows.append(_Window(received))
        w = windows[-1]
        w.count += 1
        if w.count > self.settings.alarm_burst:
            w.held += 1
            return True
        return False

    def _flood_summaries(self) -> None:
        """One alarm_summary per window that held alarms, by the first sweep at or after its end."""
        for (box, cause), windows in sorted(self.windows.items()):
            for w in windows:
                if not w.held:
                    continue
                end = w.start_ms + self.settings.alarm_hold_ms
                due = [i for i in self.sweep_steps if self.steps[i].ms >= end]
                if not due:
                    continue  # the run ends before any sweep could send it
                latest = end + self.settings.max_period_ms
                last = max(i for i in self.sweep_steps if self.steps[i].ms <= max(latest, self.steps[due[0]].ms))
                for c in self.clients(box):
                    self.expect("alarm_summary", c, (box, cause), self.steps[due[0]],
                                f"{w.held} {cause} alarms of {box} held in [{w.start_ms / 1000:g} s, {end / 1000:g} s)",
                                last_step=last, count=w.held, window_start=self.start_ms + w.start_ms,
                                window_end=self.start_ms + end)

    # ------------------------------------------------------------------ lifecycle, third alarm
    def _drops(self, box: str) -> list[Disconnect]:
        return [d for d in self.presence[box].disconnects.values() if not d.clean]

    def _lifecycle(self, step: Step, ev: dict[str, Any], kind: str) -> None:
        box = ev.get("box")
        if box not in self.presence:
            self.rejected.append((step.index, f"lifecycle event of an unknown box {box!r}"))
            return
        p = self.presence[box]
        version = ev.get("version")
        if version is None:
            version = p.auto_version + 1
        version = int(version)
        p.auto_version = max(p.auto_version, version)
        ts = round(float(ev.get("at", ev.get("t", 0))) * 1000)
        rank = 0 if kind == "connected" else 1
        p.applied = max(p.applied, (version, rank))  # Presence applies only what supersedes
        if kind == "connected":
            p.connects.setdefault(version, ts)
            life = self.active.get((box, OFFLINE, None))
            if life is not None and version > life.version:  # the box of an open third alarm is back
                del self.active[(box, OFFLINE, None)]
                life.cleared_step = step.index
                for c in self.clients(box):
                    self.expect("box_back_online", c, (box, OFFLINE, self.start_ms + life.first_ms), step,
                                f"{box} back (v{version}) after its third alarm at {life.first_ms / 1000:g} s")
            return
        if version in p.disconnects:
            return  # the same lifecycle event again
        reason = str(ev.get("reason", DEFAULT_REASON))
        drop = Disconnect(box, version, ts, reason == CLEAN_REASON, step.index)
        p.disconnects[version] = drop
        if drop.clean:
            return
        watched = [a for a in self.alarms if a.box == box
                   and a.received_ms <= ts <= a.received_ms + self.settings.offline_watch_ms]
        if not watched:
            return
        alarm = max(watched, key=lambda a: (a.received_ms, a.seq))
        if sum(1 for a in watched if (a.received_ms, a.seq) == (alarm.received_ms, alarm.seq)) > 1:
            self.ambiguities.append(f"step {step.index}: two watched alarms of {box} tie on received_at and seq")
        if alarm.identity in self.third_told:
            return
        self.third_told.add(alarm.identity)
        # it has a life from now on, unless the box is back already (a connect above the drop arrived)
        if (box, OFFLINE, None) not in self.active and not any(v > version for v in p.connects):
            life = self.active[(box, OFFLINE, None)] = _Life(box, OFFLINE, None, ts, version=version)
            self.lives.append(life)
        for c in self.clients(box):
            self.expect("offline_after_alarm", c, (box, alarm.seq, self.start_ms + alarm.alarm_ms), step,
                        f"{box} dropped at {ts / 1000:g} s within the watch of alarm #{alarm.seq} "
                        f"received at {alarm.received_ms / 1000:g} s", offline_at=self.start_ms + ts)

    # ------------------------------------------------------------------ fourth alarm
    def episodes(self) -> list[tuple[Disconnect, int | None]]:
        """Every drop (clean or not) with the end of its episode: the timestamp of the box's
        connect with the smallest version above the drop's that has arrived (None: still open)."""
        out = []
        for p in self.presence.values():
            for d in p.disconnects.values():
                later = [v for v in p.connects if v > d.version]
                out.append((d, p.connects[min(later)] if later else None))
        return out

    def _offline_sweep(self, step: Step) -> None:
        s = self.settings
        eps = self.episodes()
        parent = list(range(len(eps)))

        def find(i: int) -> int:
            while parent[i] != i:
                i = parent[i]
            return i

        for i, j in itertools.combinations(range(len(eps)), 2):
            (x, ex), (y, ey) = eps[i], eps[j]
            if x.box == y.box or self.dist(x.box, y.box) > s.outage_radius_m:
                continue
            if self._linked(x, ex, y) or self._linked(y, ey, x):
                parent[find(i)] = find(j)
        groups: dict[int, list[int]] = {}
        for i in range(len(eps)):
            groups.setdefault(find(i), []).append(i)
        clusters = []
        for members in groups.values():
            boxes = frozenset(eps[i][0].box for i in members)
            if len(boxes) < 2:
                continue
            eligible: dict[str, frozenset[str]] = {}
            for c, mine in self.boxes_of.items():
                ok = frozenset(m for m in mine if m in self.presence and m not in boxes and self.presence[m].online
                               and min(self.dist(m, b) for b in boxes) <= s.outage_radius_m)
                if ok:
                    eligible[c] = ok
            ends = [eps[i][1] for i in members]
            clusters.append(Cluster(
                episodes=frozenset((eps[i][0].box, eps[i][0].version, eps[i][0].s_ms) for i in members),
                boxes=boxes, live=any(e is None or e > step.ms for e in ends), eligible=eligible))
        clusters = [self._storm_mode(step, c, eps) for c in clusters]
        self._last_clusters = {c.episodes for c in clusters}
        self.sweeps.setdefault(step.index, []).extend(clusters)

    # ------------------------------------------------------------------ storm mode
    def _storm_test(self, step: Step, cluster: Cluster, eps: list[tuple[Disconnect, int | None]]) -> bool:
        s = self.settings
        open_boxes = sorted({d.box for d, e in eps if (d.box, d.version, d.s_ms) in cluster.episodes
                             and (e is None or e > step.ms)})
        if len(open_boxes) < s.storm_min_boxes:
            return False
        lat = sum(self.location[b][0] for b in open_boxes) / len(open_boxes)
        lng = sum(self.location[b][1] for b in open_boxes) / len(open_boxes)
        n = sum(distance_m((lat, lng), self.location[b]) <= s.storm_radius_m for b in open_boxes)
        every = sum(distance_m((lat, lng), p) <= s.storm_radius_m for p in self.location.values())
        return n >= s.storm_min_boxes and n >= s.storm_share * every

    def _storm_mode(self, step: Step, cluster: Cluster, eps: list[tuple[Disconnect, int | None]]) -> Cluster:
        """Storm mode at one sweep: the storm a cluster continues, or the test when it changed."""
        storm = next((st for st in self.storms if not st.over and st.episodes & cluster.episodes), None)
        if storm is None and cluster.live and cluster.episodes not in self._last_clusters \
                and self._storm_test(step, cluster, eps):
            storm = _Storm(set(cluster.episodes))
            self.storms.append(storm)
        if storm is None:
            return cluster
        storm.episodes |= cluster.episodes
        if not cluster.live:
            storm.over = True
            back = max(e for d, e in eps if (d.box, d.version, d.s_ms) in cluster.episodes and e is not None)
            for c in sorted(storm.told):
                self.expect("area_all_clear", c, (), step, f"the area outage of {sorted(cluster.boxes)} is over",
                            back_at=self.start_ms + back)
            return cluster
        for c in sorted(set(cluster.eligible) - storm.told):
            storm.told.add(c)
            self.expect("area_outage", c, (), step, f"area outage: {len(cluster.boxes)} boxes "
                        f"{sorted(cluster.boxes)[:5]}... offline together, eligible through "
                        f"{sorted(cluster.eligible[c])}")
        return Cluster(cluster.episodes, cluster.boxes, cluster.live, cluster.eligible, storm=True)

    def _linked(self, x: Disconnect, ex: int | None, y: Disconnect) -> bool:
        """x dropped first (or together), y within the gap, while x was still offline."""
        return (x.s_ms <= y.s_ms and y.s_ms - x.s_ms <= self.settings.outage_max_gap_ms
                and (ex is None or y.s_ms < ex))

    # ------------------------------------------------------------------ power-off
    def _power_off(self, step: Step, ev: dict[str, Any]) -> None:
        client, box, key = ev.get("client"), ev.get("box"), ev.get("key")
        if not all(isinstance(v, str) and v for v in (client, box, key)):
            self.rejected.append((step.index, "power_off needs client, box and key"))
            return
        assert isinstance(client, str) and isinstance(box, str) and isinstance(key, str)
        if box not in self.location or box not in self.boxes_of.get(client, set()):
            self.rejected.append((step.index, "power_off refused (404/403)"))
            return
        cmd = self.commands.get((client, key))
        if cmd is not None and cmd.box != box:
            self.rejected.append((step.index, "power_off refused (409: key used for another box)"))
            return
        if cmd is None:
            cmd = self.commands[(client, key)] = Command(client, key, box, step.ms)
        self.by_key[key] = cmd

    def _power_state(self, step: Step, ev: dict[str, Any]) -> None:
        key = ev.get("key")
        if key is None:
            return  # a plain power report settles nothing
        cmd = self.by_key.get(str(key))
        status = {"off": "succeeded", "failed": "failed", "refused": "refused"}.get(str(ev.get("state")))
        if cmd is None or status is None:
            self.rejected.append((step.index, "power_state cannot be delivered"))
            return
        if ev.get("box") != cmd.box:
            self.rejected.append((step.index, "power_state about another box's command (spoofed)"))
            return
        if cmd.status == "pending" or (cmd.status == "expired" and status == "succeeded"):
            late = cmd.status == "expired"
            cmd.status = status
            self.expect("power_off_result", cmd.client, (cmd.key, status), step,
                        f"{cmd.box} reported {ev.get('state')} for {cmd.client}'s command {cmd.key}"
                        + (" after it expired" if late else ""))

    def _command_sweep(self, step: Step) -> None:
        for cmd in self.commands.values():
            if cmd.status == "pending" and step.ms >= cmd.requested_ms + self.settings.command_expiry_ms:
                cmd.status = "expired"
                self.expect("power_off_result", cmd.client, (cmd.key, "expired"), step,
                            f"{cmd.client}'s command {cmd.key} (requested at {cmd.requested_ms / 1000:g} s) "
                            f"still pending at the sweep of {step.t:g} s")
