"""Many boxes in one process: one thread multiplexes every box's MQTT socket with select().

Thousands of paho clients are driven with their non-blocking loop_read/loop_write/loop_misc, so
the fleet costs one thread, not one per box. Faults are injected from any thread (they run on
the fleet's thread): raise a cause on a box, cut an area's power (the boxes' links die without a
DISCONNECT, as in a real outage), burn a box (alarm, then silence), spread a fire from box to box.
"""

from __future__ import annotations

import contextlib
import csv
import heapq
import itertools
import math
import queue
import selectors
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boxwatch_infra.device.agent import BoxAgent, Clock
from boxwatch_infra.device.detector import Thresholds
from boxwatch_infra.device.model import DistributionBox
from boxwatch_infra.device.outbox import OutboxStore

EARTH_RADIUS_M = 6371007.18


@dataclass(frozen=True)
class BoxRow:
    id: str
    name: str
    lat: float
    lng: float
    address: str = ""
    timezone: str = "Asia/Shanghai"


def read_boxes(path: Path) -> list[BoxRow]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [BoxRow(r["id"], r.get("name", r["id"]), float(r["lat"]), float(r["lng"]), r.get("address", ""),
                       r.get("timezone") or "Asia/Shanghai") for r in csv.DictReader(fh)]


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    la1, lo1, la2, lo2 = map(math.radians, (*a, *b))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


# how a cause is provoked in the electrical model: (profile attribute, value well over the default threshold)
PROVOKE = {"overtemp": ("cable_temp_c", 95.0), "residual_current": ("leakage_ma", 450.0),
           "overcurrent": ("load", 1.6)}


@dataclass
class Fleet:
    rows: list[BoxRow]
    host: str
    port: int
    state_dir: Path
    keepalive: int = 30
    clock: Clock = time.time
    tick_s: float = 1.0
    thresholds: Thresholds = field(default_factory=lambda: Thresholds(delay_s=2.0))
    on_alarm: Callable[[str, dict[str, Any]], None] | None = None

    def __post_init__(self) -> None:
        self.store = OutboxStore(self.state_dir / "fleet-outbox.db")
        self.agents: dict[str, BoxAgent] = {}
        self.positions = {r.id: (r.lat, r.lng) for r in self.rows}
        self.alarms: list[tuple[float, str, dict[str, Any]]] = []
        for r in self.rows:
            self.agents[r.id] = BoxAgent(DistributionBox.standard(r.id), self.host, self.port, self.state_dir,
                                         keepalive=self.keepalive, clock=self.clock, thresholds=self.thresholds,
                                         outbox_store=self.store, on_alarm=self._alarm)
        self._commands: queue.Queue[Callable[[], None]] = queue.Queue()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at = 0.0

    def _alarm(self, box: str, alarm: dict[str, Any]) -> None:
        self.alarms.append((self.clock(), box, alarm))
        if self.on_alarm:
            self.on_alarm(box, alarm)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Fleet:
        self.started_at = self.clock()
        for agent in self.agents.values():
            agent.started_at = self.started_at
            with contextlib.suppress(OSError):  # retried by the loop
                agent.connect()
        self._thread = threading.Thread(target=self._loop, name="fleet", daemon=True)
        self._thread.start()
        return self

    def stop(self, clean: bool = True) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)
        for agent in self.agents.values():
            if clean and agent.connected:
                agent.client.disconnect()
                agent.client.loop_write()
        self.store.close()

    def wait_connected(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(a.connected for a in self.agents.values() if a.powered):
                return True
            time.sleep(0.05)
        return False

    def run_on_loop(self, fn: Callable[[], None]) -> None:
        self._commands.put(fn)

    def after(self, delay_s: float, fn: Callable[[], None]) -> None:
        """Run fn on the fleet's thread `delay_s` from now (in the fleet clock)."""
        self.run_on_loop(lambda: heapq.heappush(self._timers, (self.clock() + delay_s, next(self._seq), fn)))

    def _sync_selector(self, sel: selectors.BaseSelector, registered: dict[str, tuple[Any, int]]) -> None:
        """Keep the epoll set in step with the boxes' sockets (epoll: select() stops at 1024 fds)."""
        for box_id, agent in self.agents.items():
            sock = agent.client.socket() if agent.powered else None
            reg = registered.get(box_id)
            if sock is None:
                if reg is not None:
                    with contextlib.suppress(KeyError, ValueError, OSError):
                        sel.unregister(reg[0])
                    del registered[box_id]
                continue
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if agent.client.want_write() else 0)
            if reg is not None and reg[0] is sock:
                if reg[1] != events:
                    sel.modify(sock, events, agent)
                    registered[box_id] = (sock, events)
                continue
            if reg is not None:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    sel.unregister(reg[0])
            # a closed socket's fd may already serve another box's new connection: drop the stale entry
            stale = sel.get_map().get(sock.fileno()) if sock.fileno() >= 0 else None
            if stale is not None:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    sel.unregister(stale.fileobj)
                for other in [b for b, r in registered.items() if r[0] is stale.fileobj]:
                    del registered[other]
            try:
                sel.register(sock, events, agent)
                registered[box_id] = (sock, events)
            except (KeyError, ValueError, OSError):
                registered.pop(box_id, None)

    def _loop(self) -> None:
        next_tick = 0.0
        last_reconnect = 0.0
        sel = selectors.DefaultSelector()
        registered: dict[str, tuple[Any, int]] = {}
        while not self._stop.is_set():
            self._sync_selector(sel, registered)
            if registered:
                try:
                    ready = sel.select(0.1)
                except OSError:
                    ready = []
            else:
                time.sleep(0.1)
                ready = []
            for key, mask in ready:
                agent: BoxAgent = key.data
                if mask & selectors.EVENT_READ:
                    agent.client.loop_read()
                if mask & selectors.EVENT_WRITE:
                    agent.client.loop_write()
            while not self._commands.empty():
                self._commands.get_nowait()()
            now = self.clock()
            while self._timers and self._timers[0][0] <= now:
                heapq.heappop(self._timers)[2]()
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.tick_s
                for agent in self.agents.values():
                    if agent.powered:
                        agent.client.loop_misc()  # keep-alive pings, timeouts
                        agent.tick()
            if time.monotonic() - last_reconnect > 2.0:
                last_reconnect = time.monotonic()
                for agent in self.agents.values():
                    if agent.powered and not agent.connected and agent.client.socket() is None:
                        with contextlib.suppress(OSError):
                            agent.client.reconnect()
        sel.close()

    # ------------------------------------------------------------------ faults
    def raise_cause(self, box_id: str, cause: str, hold_s: float = 60.0) -> None:
        """Provoke `cause` on a box for `hold_s`: the detector alarms after its delay."""
        if cause not in PROVOKE:
            raise ValueError(f"cannot provoke {cause!r}; one of {sorted(PROVOKE)}")

        def apply() -> None:
            agent = self.agents[box_id]
            t = self.clock() - agent.started_at
            attr, value = PROVOKE[cause]
            if attr == "load":
                for b in agent.box.branches:
                    b.load_a.set(t, value * agent.box.rated_current_a).set(t + hold_s, 6.0)
            else:
                profile = getattr(agent.box, attr)
                base = profile.at(t)
                profile.set(t, value).set(t + hold_s, base)

        self.run_on_loop(apply)

    def within(self, lat: float, lng: float, radius_m: float) -> list[str]:
        return [b for b, p in self.positions.items() if distance_m((lat, lng), p) <= radius_m]

    def cut_power(self, lat: float, lng: float, radius_m: float) -> list[str]:
        """An area outage: every box within the radius drops its link without a DISCONNECT."""
        boxes = self.within(lat, lng, radius_m)
        def apply() -> None:
            for b in boxes:
                self.agents[b].power_loss()

        self.run_on_loop(apply)
        return boxes

    def restore_power(self, boxes: Iterable[str]) -> None:
        def apply() -> None:
            for b in boxes:
                agent = self.agents[b]
                agent.powered = True
                agent.box.main_closed = True

        self.run_on_loop(apply)

    def burn(self, box_id: str, silence_after_s: float = 5.0) -> None:
        """A box that burns: overtemperature alarm, then its module dies (no DISCONNECT)."""
        self.raise_cause(box_id, "overtemp", hold_s=3600)
        delay = self.thresholds.delay_s + self.tick_s * 2 + silence_after_s
        self.after(delay, lambda: self.agents[box_id].power_loss())

    def spread_fire(self, start: str, hops: int, delay_s: float, reach_m: float = 400.0) -> list[str]:
        """A fire spreading from `start` to its nearest neighbours, one hop every `delay_s`."""
        order, frontier, seen = [start], [start], {start}
        for _ in range(hops):
            nxt = []
            for box in frontier:
                near = sorted((distance_m(self.positions[box], p), b) for b, p in self.positions.items()
                              if b not in seen)
                for d, b in near[:2]:
                    if d <= reach_m:
                        seen.add(b)
                        nxt.append(b)
            order += nxt
            frontier = nxt
        for i, box in enumerate(order):
            hop = 0 if i == 0 else 1 + (i - 1) // 2
            self.after(hop * delay_s, lambda b=box: self.burn(b))  # type: ignore[misc]
        return order

    def stats(self) -> dict[str, Any]:
        return {"boxes": len(self.agents), "connected": sum(a.connected for a in self.agents.values()),
                "powered": sum(a.powered for a in self.agents.values()), "alarms_raised": len(self.alarms),
                "outbox_pending": int(self.store.execute("SELECT COUNT(*) FROM outbox")[0][0])}


def parse_fault(spec: str) -> tuple[float, str, list[str]]:
    """`AT:ACTION:ARGS` e.g. `5:raise:BX-1:overtemp`, `10:cut:39.98,116.31,300`, `20:burn:BX-5`,
    `30:fire:BX-9,3,10` (start, hops, delay s)."""
    parts = spec.split(":")
    if len(parts) < 3:
        raise ValueError(f"fault {spec!r}: expected AT:ACTION:ARGS")
    return float(parts[0]), parts[1], parts[2:]


def schedule_fault(fleet: Fleet, at: float, action: str, args: list[str]) -> None:
    def run() -> None:
        if action == "raise":
            fleet.raise_cause(args[0], args[1])
        elif action == "cut":
            lat, lng, radius = (float(x) for x in args[0].split(","))
            fleet.cut_power(lat, lng, radius)
        elif action == "burn":
            fleet.burn(args[0])
        elif action == "fire":
            start, hops, delay = args[0].split(",")
            fleet.spread_fire(start, int(hops), float(delay))
        else:
            raise ValueError(f"unknown fault action {action!r}")

    if action not in ("raise", "cut", "burn", "fire"):
        raise ValueError(f"unknown fault action {action!r}")
    fleet.after(at, run)
