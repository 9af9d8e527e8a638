"""Seeded random scenarios in the replay format: what a real fleet delivers, small enough to run
hundreds a minute.

A scenario: 2-40 boxes in 1-3 clusters (positions kept >= 1.5 m off every radius, so floats never
decide), clients bound to one or two boxes, then per family:

- alarms: singles, repeats and floods from 2 causes, box clocks skewed up to +-120 s, deliveries
  late by up to minutes (outbox backlog), redeliveries, counter restarts (seq reused), alarm
  times exactly one window apart and arrivals exactly one hold apart (inclusive/exclusive edges);
- lifecycle: drops and reconnects per box, area outages (drops within the gap, some exactly the
  gap apart, some reconnecting before the sweep or exactly when a partner drops), flaps inside
  the third-alarm watch, drops exactly at the watch's end, events late, reordered and twice;
- power: power-off requests (repeated keys, unbound clients), box reports quick, at the expiry
  instant or late, twice;
- extras: an extra delivery of the schedules;
- faults: throttles, 5xx and crashes on chosen calls of chosen functions (replay/faults.py).

`BOXWATCH_MODEL_FEATURES=alarms,lifecycle` limits the families (default: all).
"""

from __future__ import annotations

import math
import random
from typing import Any

from tests.model.world import EARTH_RADIUS_M, distance_m, env_choice

FEATURES = ("alarms", "lifecycle", "power", "extras", "faults", "life")

# Parameter sets (one sandbox each): short windows so that a scenario's virtual time stays short.
PROFILES: tuple[dict[str, Any], ...] = (
    {"neighbour_radius_m": 400, "neighbour_window_s": 60, "offline_watch_s": 60, "outage_radius_m": 300,
     "outage_max_gap_s": 30, "sweep_interval_s": 60, "command_expiry_s": 60, "alarm_burst": 2,
     "alarm_repeat_hold_s": 60},
    {"neighbour_radius_m": 300, "neighbour_window_s": 45, "offline_watch_s": 90, "outage_radius_m": 400,
     "outage_max_gap_s": 45, "sweep_interval_s": 60, "command_expiry_s": 45, "alarm_burst": 3,
     "alarm_repeat_hold_s": 90},
    # the fan-out path: every incident's warnings go part by part (res-7 parts: one area cell each)
    # through OutageNotify, as a city blackout's do
    {"neighbour_radius_m": 400, "neighbour_window_s": 60, "offline_watch_s": 60, "outage_radius_m": 300,
     "outage_max_gap_s": 30, "sweep_interval_s": 60, "command_expiry_s": 60, "alarm_burst": 2,
     "alarm_repeat_hold_s": 60, "sweep_fan_out_members": 2, "sweep_part_res": 7},
)
CAUSES = ("overtemp", "overcurrent")
UNCLEAN = ("MQTT_KEEP_ALIVE_TIMEOUT", "CONNECTION_LOST", "SERVER_INITIATED_DISCONNECT")
CLEAN = "CLIENT_INITIATED_DISCONNECT"
MARGIN_M = 1.5

# where faults go: function -> [(service, operation)]
FAULT_CALLS: dict[str, list[tuple[str, str]]] = {
    "AlarmIngest": [("dynamodb", "GetItem"), ("dynamodb", "PutItem"), ("dynamodb", "TransactWriteItems"),
                    ("dynamodb", "Query"), ("dynamodb", "UpdateItem"), ("sns", "Publish")],
    "Presence": [("dynamodb", "GetItem"), ("dynamodb", "TransactWriteItems"), ("dynamodb", "UpdateItem"),
                 ("dynamodb", "Query"), ("sns", "Publish")],
    "OfflineSweep": [("dynamodb", "Query"), ("dynamodb", "BatchGetItem"), ("dynamodb", "PutItem"),
                     ("dynamodb", "UpdateItem"), ("dynamodb", "TransactWriteItems"),
                     ("dynamodb", "BatchWriteItem"), ("sns", "Publish")],
    "CommandAck": [("dynamodb", "GetItem"), ("dynamodb", "UpdateItem"), ("iot-data", "UpdateThingShadow"),
                   ("iot-data", "GetThingShadow"), ("sns", "Publish")],
    "CommandExpiry": [("dynamodb", "Query"), ("dynamodb", "UpdateItem"), ("iot-data", "UpdateThingShadow"),
                      ("sns", "Publish")],
}


def selected_features() -> tuple[str, ...]:
    return env_choice("BOXWATCH_MODEL_FEATURES", FEATURES)


def _offset(lat: float, lng: float, north_m: float, east_m: float) -> tuple[float, float]:
    dlat = math.degrees(north_m / EARTH_RADIUS_M)
    dlng = math.degrees(east_m / (EARTH_RADIUS_M * math.cos(math.radians(lat))))
    return round(lat + dlat, 7), round(lng + dlng, 7)


class _Gen:
    def __init__(self, seed: int, features: tuple[str, ...], size: str = "full"):
        self.rng = random.Random(seed)
        self.size = size
        self.seed = seed
        self.features = features
        self.s = dict(self.rng.choice(PROFILES))
        self.boxes: list[dict[str, Any]] = []
        self.clients: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.faults: list[dict[str, Any]] = []
        self.cluster_of: dict[str, int] = {}
        self.version: dict[str, int] = {}
        self.alarms: list[dict[str, Any]] = []  # generated alarm events (first deliveries)
        self._raised: dict[int, tuple[int, bool]] = {}  # id(alarm event) -> (time raised, counter restart)
        self._copies: list[tuple[dict[str, Any], int]] = []  # redeliveries: (alarm, how much later)

    # ---------------------------------------------------------------- fleet
    def fleet(self) -> None:
        r = self.rng
        if self.size == "small":  # make test: hundreds in two minutes
            n = r.choices([r.randint(2, 4), r.randint(5, 8), r.randint(9, 40)], weights=[68, 30, 2])[0]
        else:
            n = r.choices([r.randint(2, 5), r.randint(6, 12), r.randint(13, 25), r.randint(26, 40)],
                          weights=[60, 28, 9, 3])[0]
        n_clusters = 1 if n < 6 else r.randint(1, 3)
        radii = (self.s["neighbour_radius_m"], self.s["outage_radius_m"])
        spread = 1.3 * max(radii)
        for i in range(n):
            k = i % n_clusters
            center = (39.90 + 0.05 * k, 116.30 + 0.05 * k)
            for _ in range(200):
                a, d = r.uniform(0, 2 * math.pi), spread * math.sqrt(r.random())
                lat, lng = _offset(*center, d * math.cos(a), d * math.sin(a))
                if all(abs(distance_m((lat, lng), (b["lat"], b["lng"])) - rad) > MARGIN_M
                       for b in self.boxes for rad in radii):
                    break
            else:  # pragma: no cover - 200 tries always find room
                continue
            box: dict[str, Any] = {"id": f"B{i:02d}", "name": f"Box {i}", "lat": lat, "lng": lng}
            if r.random() < 0.04:
                box["online"] = False
            self.boxes.append(box)
            self.cluster_of[box["id"]] = k
            self.version[box["id"]] = 1
        ids = [b["id"] for b in self.boxes]
        c = 0
        for box in ids:
            for _ in range(r.choices([0, 1, 2], weights=[15, 70, 15])[0]):
                bound = [box]
                if r.random() < 0.2:
                    bound.append(r.choice(ids))
                self.clients.append({"id": f"c{c}", "boxes": sorted(set(bound)), "locale": r.choice(["en", "zh-CN"])})
                c += 1

    def box_ids(self, cluster: int | None = None) -> list[str]:
        return [b["id"] for b in self.boxes if cluster is None or self.cluster_of[b["id"]] == cluster]

    # ---------------------------------------------------------------- alarms
    def alarm(self, box: str, true_t: int, cause: str, skew: int, delay: int, restart: bool = False) -> dict[str, Any]:
        """An alarm raised at `true_t`; its seq is given in `number_alarms` (per box, by the time
        raised); `restart`: the box's counter restarted just before it (seq 1 again)."""
        ev = {"t": true_t + delay, "box": box, "type": "alarm", "cause": cause,
              "value": round(self.rng.uniform(90, 120), 1), "threshold": 85, "seq": 0}
        if skew or delay:
            ev["alarm_at"] = true_t + skew
        self.events.append(ev)
        self.alarms.append(ev)
        self._raised[id(ev)] = (true_t, restart)
        if self.rng.random() < 0.1:  # QoS 1 redelivery: the same payload again, later
            self._copies.append((ev, self.rng.choice([0, 1, 5, 40])))
        return ev

    def number_alarms(self) -> None:
        """seq grows per box with the time each alarm was raised (a restart begins at 1 again)."""
        by_box: dict[str, list[dict[str, Any]]] = {}
        for ev in self.alarms:
            by_box.setdefault(ev["box"], []).append(ev)
        for evs in by_box.values():
            seq = 0
            for ev in sorted(evs, key=lambda e: self._raised[id(e)][0]):
                seq = 1 if self._raised[id(ev)][1] else seq + 1
                ev["seq"] = seq
        for ev, later in self._copies:  # the same payload: the alarm time it was first sent with
            self.events.append({**ev, "t": ev["t"] + later, "alarm_at": ev.get("alarm_at", ev["t"])})

    def alarms_family(self) -> None:
        r = self.rng
        w, hold = self.s["neighbour_window_s"], self.s["alarm_repeat_hold_s"]
        skew = {b: (r.randint(-120, 120) if r.random() < 0.3 else r.choice([0, 0, 0, 1, -2])) for b in self.box_ids()}
        most = 3 if self.size == "small" else 5
        for box in r.sample(self.box_ids(), k=r.randint(1, min(most, len(self.boxes) // 2 + 1))):
            cause = r.choices(CAUSES, weights=[75, 25])[0]
            t0 = r.randint(0, 120)
            delay = r.choices([0, r.randint(1, 10), r.randint(30, 150)], weights=[70, 15, 15])[0]
            pattern = r.choices(["single", "repeat", "flood"], weights=[60, 25, 15])[0]
            count = {"single": 1, "repeat": r.randint(2, 3), "flood": r.randint(4, 7)}[pattern]
            t = t0
            for _ in range(count):
                self.alarm(box, t, cause, skew[box], delay)
                t += r.choice([1, 3, 5, 10, 20])
            if pattern != "single" and r.random() < 0.4:  # one more exactly when the hold window ends
                self.alarm(box, t0 + hold, cause, skew[box], delay)
            if r.random() < 0.05:  # the counter restarted: seq 1 again, other content
                self.alarm(box, t + r.randint(5, 30), cause, skew[box], 0, restart=True)
        # same-cause alarms exactly one window apart (either direction) on a nearby box
        for ev in list(self.alarms):
            if r.random() < 0.25:
                near = [b for b in self.box_ids(self.cluster_of[ev["box"]]) if b != ev["box"]]
                if not near:
                    continue
                other = r.choice(near)
                at = int(ev.get("alarm_at", ev["t"])) + r.choice([w, -w, w + 1, -(w + 1)])
                arrive = max(0, at + r.choice([0, 0, 3, 60]))
                if at > arrive + 120:
                    continue
                self.alarm(other, at, ev["cause"], 0, arrive - at)

        # a spreading fire: A, then B 5 s later, then C received exactly one window after B (raised
        # long before: backlog), so A's clients hear of B and, in a new window, of C
        for cluster in sorted(set(self.cluster_of.values())):
            trio = self.box_ids(cluster)
            if len(trio) >= 3 and r.random() < 0.15:
                a, b, c = r.sample(trio, 3)
                t0 = r.randint(0, 60)
                self.alarm(a, t0, "overtemp", 0, 0)
                self.alarm(b, t0 + 5, "overtemp", 0, 0)
                self.alarm(c, t0 + 10, "overtemp", 0, w - 5)

    # ---------------------------------------------------------------- the alarm's life
    def life_family(self) -> None:
        """Clears and acks of the generated alarms: before, at and after the reminder's instant,
        twice, by unbound clients, of a cause the box never raised; managers with SMS numbers."""
        r = self.rng
        e = 300  # EscalateAfterS default
        for n, ev in enumerate(list(self.alarms)):
            if r.random() < 0.65:
                continue
            box, t = ev["box"], int(ev["t"])
            when = t + r.choice([r.randint(1, 200), r.randint(1, 200), e, e + r.randint(1, 60)])
            bound = [c["id"] for c in self.clients if box in c["boxes"]]
            if r.random() < 0.5:
                clear = {"t": when, "box": box, "type": "clear", "cause": ev["cause"], "seq": 10_000 + n,
                         "value": 70.0, "threshold": 85}
                self.events.append(clear)
                if r.random() < 0.15:  # QoS 1 redelivery of the clear
                    self.events.append({**clear, "t": when + r.choice([0, 1, 30]), "alarm_at": when})
            elif bound or r.random() < 0.2:
                client = r.choice(bound) if bound and r.random() < 0.9 else r.choice(
                    [c["id"] for c in self.clients] or ["nobody"])
                ack = {"t": when, "type": "ack", "client": client, "box": box,
                       "cause": ev["cause"] if r.random() < 0.95 else "arc_fault",
                       "disposition": r.choice(["real", "false_alarm", "test", "drill", "bogus"])}
                self.events.append(ack)
                if r.random() < 0.2:  # acknowledged twice (another disposition): the first stands
                    self.events.append({**ack, "t": when + r.choice([0, 5]), "disposition": "real"})
        # managers (the SMS step), and sometimes a run long enough to reach it
        for n, client in enumerate(self.clients):
            if r.random() < 0.25:
                client.update(role="manager", sms=f"+86138{n:08d}")
        if any("sms" in c for c in self.clients) and r.random() < 0.4:
            last = max(int(a["t"]) for a in self.alarms)
            self.events.append({"t": last + 2 * e + r.choice([0, 30, 90]), "type": "scheduled"})

    # ---------------------------------------------------------------- lifecycle
    def lifecycle(self, box: str, kind: str, at: int, reason: str | None = None) -> None:
        self.version[box] += 1
        ev: dict[str, Any] = {"t": at, "box": box, "type": kind, "version": self.version[box], "at": at}
        if reason is not None:
            ev["reason"] = reason
        r = self.rng
        ev["t"] = at + r.choices([0, r.randint(1, 5), r.randint(20, 150)], weights=[70, 20, 10])[0]
        self.events.append(ev)
        if r.random() < 0.1:  # AWS delivers lifecycle events twice
            self.events.append({**ev, "t": ev["t"] + r.choice([0, 2, 30])})

    def reason(self) -> str:
        return CLEAN if self.rng.random() < 0.15 else self.rng.choice(UNCLEAN)

    def lifecycle_family(self) -> None:
        r = self.rng
        gap, watch = self.s["outage_max_gap_s"], self.s["offline_watch_s"]
        busy: set[str] = set()
        # area outages: boxes of a cluster drop within the gap of each other
        for _ in range(r.choice([0, 1, 1, 2])):
            cluster = r.choice(sorted(set(self.cluster_of.values())))
            members = [b for b in self.box_ids(cluster) if b not in busy]
            if len(members) < 2:
                continue
            members = r.sample(members, k=r.randint(2, len(members)))
            t = r.randint(10, 200)
            times = []
            for _ in members:
                times.append(t)
                t += r.choice([0, 1, 5, gap // 2, gap, gap, gap + 1])  # exactly the gap, on purpose
            for b, dropped in zip(members, times, strict=True):
                busy.add(b)
                self.lifecycle(b, "disconnected", dropped, self.reason())
                how = r.choices(["never", "quick", "partner", "later"], weights=[40, 25, 10, 25])[0]
                if how == "quick":
                    self.lifecycle(b, "connected", dropped + r.randint(1, 20))
                elif how == "partner":  # back exactly when the next one drops: no link (s_y < e_x fails)
                    later = [x for x in times if x > dropped]
                    self.lifecycle(b, "connected", later[0] if later else dropped + gap)
                elif how == "later":
                    self.lifecycle(b, "connected", dropped + r.randint(30, 200))
        # single boxes: drops after their alarms (third alarm), flaps, clean goodbyes
        alarmed: dict[str, dict[str, Any]] = {}
        for ev in self.alarms:
            alarmed.setdefault(ev["box"], ev)
        for box in self.box_ids():
            if box in busy or r.random() > (0.6 if box in alarmed else 0.15):
                continue
            if box in alarmed:
                received = int(alarmed[box]["t"])
                at = received + r.choice([0, 1, watch // 2, watch - 1, watch, watch, watch + 1, r.randint(0, watch)])
            else:
                at = r.randint(5, 250)
            self.lifecycle(box, "disconnected", at, self.reason())
            if r.random() < 0.6:
                back = at + r.randint(2, 40)
                self.lifecycle(box, "connected", back)
                if r.random() < 0.4:  # a flap: down again inside the watch
                    self.lifecycle(box, "disconnected", back + r.randint(1, 20), self.reason())
                    if r.random() < 0.5:
                        self.lifecycle(box, "connected", back + r.randint(25, 60))

    # ---------------------------------------------------------------- power-off
    def power_family(self) -> None:
        r = self.rng
        expiry = self.s["command_expiry_s"]
        bound = [(c["id"], b) for c in self.clients for b in c["boxes"]]
        if not bound:
            return
        for i in range(r.randint(1, 3)):
            client, box = r.choice(bound)
            key = f"key-{self.seed}-{i:02d}"
            q = r.randint(0, 200)
            self.events.append({"t": q, "type": "power_off", "client": client, "box": box, "key": key})
            if r.random() < 0.15:  # the phone retries with the same key
                self.events.append({"t": q + r.choice([0, 1, 10]), "type": "power_off", "client": client, "box": box,
                                    "key": key})
            outcome = r.choices(["off", "failed", "refused", None], weights=[60, 15, 10, 15])[0]
            if outcome is None:
                continue
            when = r.choices([q + r.randint(1, 30), q + expiry, q + expiry + r.randint(1, 100)],
                             weights=[60, 15, 25])[0]
            report = {"t": when, "type": "power_state", "box": box, "state": outcome, "key": key}
            self.events.append(report)
            if r.random() < 0.1:
                self.events.append({**report, "t": when + r.choice([0, 5])})
        strangers = [c["id"] for c in self.clients]
        if strangers and r.random() < 0.15:
            client = r.choice(strangers)
            mine = next(c["boxes"] for c in self.clients if c["id"] == client)
            others = [b for b in self.box_ids() if b not in mine]
            if others:
                self.events.append({"t": r.randint(0, 200), "type": "power_off", "client": client,
                                    "box": r.choice(others), "key": f"key-{self.seed}-stranger"})

    def extras_family(self) -> None:
        r = self.rng
        if r.random() < 0.15:
            self.events.append({"t": r.choice([60, 120, r.randint(1, 250)]), "type": "scheduled"})

    def faults_family(self) -> None:
        r = self.rng
        for _ in range(r.randint(1, 3)):
            function = r.choice(sorted(FAULT_CALLS))
            service, operation = r.choice(FAULT_CALLS[function])
            # a crash after a push repeats that push whatever the system does (no push is atomic
            # with its record): crashes go after DynamoDB and shadow calls only
            kinds = ["throttle", "5xx"] + ([] if service == "sns" else ["crash"])
            fault: dict[str, Any] = {"function": function, "service": service, "operation": operation,
                                     "error": r.choice(kinds), "after": r.choice([0, 0, 1, 2, 3, 5]),
                                     "times": r.choice([1, 1, 2])}
            self.faults.append(fault)

    def build(self) -> dict[str, Any]:
        self.fleet()
        if "alarms" in self.features:
            self.alarms_family()
            self.number_alarms()
        if "lifecycle" in self.features:
            self.lifecycle_family()
        if "power" in self.features and self.rng.random() < 0.35:
            self.power_family()
        if "extras" in self.features:
            self.extras_family()
        if "faults" in self.features and self.rng.random() < 0.35:
            self.faults_family()
        if "life" in self.features and self.alarms:  # last: the other families draw as before
            self.life_family()
        events = sorted(self.events, key=lambda e: e["t"])  # stable: ties keep generation order
        out: dict[str, Any] = {"settings": self.s, "boxes": self.boxes, "clients": self.clients, "events": events}
        if self.faults:
            out["faults"] = self.faults
        return out


SIZES = ("small", "full")


def generate(seed: int, features: tuple[str, ...] | None = None, size: str = "full") -> dict[str, Any]:
    """The scenario of `seed`; one the model finds ambiguous is drawn again (seed, attempt).
    `small` keeps most fleets at 2-8 boxes and 3 alarming boxes (make test); `full` is the soak's."""
    from tests.model.model import Model

    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}")
    features = selected_features() if features is None else features
    for attempt in range(20):
        scenario = _Gen(seed * 100 + attempt, features, size).build()
        if not Model(scenario).ambiguities:
            return scenario
    raise RuntimeError(f"seed {seed}: 20 draws were all ambiguous")
