"""`boxwatch demo`: a scripted day in a district of Beijing, on the local cloud, with a fleet of
real device agents (infra/boxwatch_infra/device) over MQTT.

The local cloud runs in a child process (moto_server in another); this process runs the fleet, the
script, and the phones' display. Each step injects a fault in the fleet (the boxes' detectors raise
the alarms, their links drop as they would) or calls the command API as a phone app would, then
waits for the notifications the step must produce. The exit code says whether every one arrived.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from boxwatch.registry import BoxSpec
from boxwatch_infra.localcloud.cloud import LocalCloudConfig, LocalCloudProcess
from boxwatch_infra.localcloud.phones import format_push
from boxwatch_infra.localcloud.seed import ClientSpec, provision

# Haidian district, Beijing (around Zhongguancun): a grid of boxes ~150 m apart
ORIGIN = (39.9750, 116.3000)
SPACING_M = 150.0
ESCALATE_AFTER_S = 20
MANAGER_SMS = "+8613800138000"
STREETS = ["Zhongguancun St", "Haidian Rd", "Suzhou St", "Caihefang Rd", "Danling St", "Kexueyuan S Rd",
           "Zhichun Rd", "Xueyuan Rd", "Chengfu Rd", "Shuangyushu N Rd"]


@dataclass
class Expect:
    step: str
    client: str
    kind: str
    box: str | None = None
    check: Callable[[dict[str, Any]], bool] | None = None
    push: dict[str, Any] | None = None

    def matches(self, p: dict[str, Any]) -> bool:
        return p["client"] == self.client and p["kind"] == self.kind and (self.box is None or p["box"] == self.box) \
            and (self.check is None or self.check(p))

    @property
    def label(self) -> str:
        return f"{self.client} <- {self.kind}" + (f" ({self.box})" if self.box else "")


@dataclass
class Grid:
    cols: int
    rows: int

    def box_id(self, r: int, c: int) -> str:
        return f"BX-{r * self.cols + c + 1:04d}"

    def position(self, r: int, c: int) -> tuple[float, float]:
        dlat = SPACING_M / 111_320.0
        dlng = SPACING_M / (111_320.0 * math.cos(math.radians(ORIGIN[0])))
        return round(ORIGIN[0] + r * dlat, 6), round(ORIGIN[1] + c * dlng, 6)

    def specs(self) -> list[BoxSpec]:
        out = []
        for r in range(self.rows):
            for c in range(self.cols):
                lat, lng = self.position(r, c)
                n = r * self.cols + c + 1
                out.append(BoxSpec(id=self.box_id(r, c), name=f"Building {n}",
                                   address=f"{(c + 1) * 8} {STREETS[r % len(STREETS)]}, Haidian, Beijing",
                                   lat=lat, lng=lng, timezone="Asia/Shanghai"))
        return out


@dataclass
class Demo:
    out: TextIO = sys.stdout
    boxes: int = 300
    schedule_scale: float = 6.0  # the offline sweep (rate(1 minute)) runs every 10 s
    step_timeout_s: float = 45.0
    keep: bool = False
    state_dir: Path | None = None
    screenshot: Path | None = None  # the operator console during the fire, as a PNG
    pushes: list[dict[str, Any]] = field(default_factory=list)
    expects: list[Expect] = field(default_factory=list)
    checks: list[tuple[str, str, bool]] = field(default_factory=list)  # (step, what, ok)

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    # ---------------------------------------------------------------- phones
    def _watch_phones(self, lc: LocalCloudProcess, stop: threading.Event) -> None:
        since = 0
        while not stop.is_set():
            try:
                items, since = lc.pushes(since)
            except OSError:
                items = []
            quiet = 0
            for p in items:
                self.pushes.append(p)
                if p["client"].startswith("owner-") and p["kind"] == "neighbour_outage":
                    quiet += 1  # dozens of neighbours: counted, not listed
                    continue
                self.say("      " + format_push(p, self.t0_ms))
            if quiet:
                self.say(f"      ... and {quiet} more neighbours' phones: the fourth alarm (neighbour_outage)")
            stop.wait(0.2)

    def expect(self, step: str, client: str, kind: str, box: str | None = None,
               check: Callable[[dict[str, Any]], bool] | None = None) -> Expect:
        e = Expect(step, client, kind, box, check)
        self.expects.append(e)
        return e

    def wait(self, expects: list[Expect], timeout: float | None = None) -> bool:
        deadline = time.monotonic() + (timeout or self.step_timeout_s)
        while time.monotonic() < deadline:
            for e in expects:
                if e.push is None:
                    e.push = next((p for p in self.pushes if e.matches(p)), None)
            if all(e.push is not None for e in expects):
                return True
            time.sleep(0.2)
        return False

    def step(self, clock: str, title: str) -> None:
        self.say(f"\n[{clock}] {title}")

    # ---------------------------------------------------------------- the day
    def run(self) -> int:
        from boxwatch_infra.device.fleet import BoxRow, Fleet

        started = time.monotonic()
        grid = Grid(cols=20, rows=max(1, math.ceil(self.boxes / 20)))
        specs = grid.specs()[: self.boxes] if self.boxes >= 200 else grid.specs()
        state = self.state_dir or Path(tempfile.mkdtemp(prefix="boxwatch-demo-"))
        state.mkdir(parents=True, exist_ok=True)
        # a short escalation (20 s to the reminder, 40 s to the SMS) so that the day shows one
        cfg = LocalCloudConfig(state_dir=str(state / "cloud"), schedule_scale=self.schedule_scale,
                               parameter_overrides={"EscalateAfterS": ESCALATE_AFTER_S})
        self.say(f"boxwatch demo: {len(specs)} boxes in Haidian, Beijing; local cloud from template.yaml "
                 f"(logs: {state})")
        lc = LocalCloudProcess(cfg).start()
        fleet: Fleet | None = None
        stop = threading.Event()
        passed = False
        try:
            info = lc.info
            self.say(f"  local cloud up in {time.monotonic() - started:.1f} s: stack {info['stack']!r} created by "
                     f"CloudFormation in {info['stack_created_in_s']} s; "
                     f"{len(info['functions'])} functions, {len(info['rules'])} rules, "
                     f"{len(info['schedules'])} schedules (x{self.schedule_scale:g}), "
                     f"{sum(len(a['routes']) for a in info['routes'])} API routes")
            self.say(f"  MQTT 127.0.0.1:{info['mqtt']['port']}  AWS {info['moto']}  iot-data {info['iot_data']}  "
                     f"API {', '.join(info['apis'].values())}")

            # people: a persona for every box the script touches, a generic owner elsewhere
            A, B1, B2, B3 = grid.box_id(1, 1), grid.box_id(2, 15), grid.box_id(3, 16), grid.box_id(2, 17)
            C, F, G = grid.box_id(12, 18), grid.box_id(7, 9), grid.box_id(7, 12)
            personas = {A: "alice", B1: "bo", B2: "chen", B3: "dana", C: "erik", F: "fatima", G: "grace"}
            owner = {s.id: personas.get(s.id, f"owner-{s.id}") for s in specs}
            t = time.monotonic()
            # hana manages the leak-prone block (B1-B3): the escalation SMS goes to her
            provision(info, specs, [ClientSpec(owner[s.id], (s.id,), "en") for s in specs]
                      + [ClientSpec("hana", (B1, B2, B3), "zh-CN", role="manager", sms=MANAGER_SMS)])
            lc.console(f"/phone-numbers/{MANAGER_SMS}=hana", "POST")
            self.say(f"  provisioned {len(specs)} boxes (registry, IoT things) and {len(owner)} phones "
                     f"(SNS push endpoints) in {time.monotonic() - t:.1f} s")

            rows = [BoxRow(s.id, s.name, s.lat, s.lng, s.address) for s in specs]
            fleet = Fleet(rows, "127.0.0.1", int(info["mqtt"]["port"]), state / "fleet", keepalive=30)
            t = time.monotonic()
            fleet.start()
            ok = fleet.wait_connected(60)
            self.say(f"  fleet: {sum(a.connected for a in fleet.agents.values())}/{len(rows)} device agents "
                     f"connected in {time.monotonic() - t:.1f} s; waiting for the cloud to take in their "
                     f"connections and shadow reports")
            self.checks.append(("start", "every box connected", ok))
            lc.drain()
            time.sleep(1.0)
            lc.drain()
            self.t0_ms = int(time.time() * 1000)
            watcher = threading.Thread(target=self._watch_phones, args=(lc, stop), daemon=True)
            watcher.start()

            # 1 ---------------------------------------------------------------------------------
            self.step("08:10", f"{A} ({personas[A]}'s building): the cable heats up - a single overtemperature alarm")
            fleet.raise_cause(A, "overtemp", hold_s=30)
            self.wait([self.expect("1 single alarm", "alice", "alarm", A, lambda p: p["data"]["cause"] == "overtemp")])
            self.say(f"      ... the cable cools down: {A}'s detector sends its clear message")
            self.wait([self.expect("1 single alarm", "alice", "alarm_cleared", A,
                                   lambda p: p["data"]["cause"] == "overtemp")], timeout=self.step_timeout_s + 40)

            # 2 ---------------------------------------------------------------------------------
            self.step("09:40", f"leakage in the rain: {B1}, {B2}, {B3} (~150-300 m apart) raise residual-current "
                      "alarms one after the other")
            # the leak lasts two minutes: long enough for the escalation (20 s reminder, 40 s SMS)
            for i, b in enumerate((B1, B2, B3)):
                fleet.after(i * 3.0, lambda b=b: fleet.raise_cause(b, "residual_current", hold_s=120))  # type: ignore[misc]
            exp = [self.expect("2 same-cause cluster", owner[b], "alarm", b) for b in (B1, B2, B3)]
            exp += [self.expect("2 same-cause cluster", "chen", "same_cause_nearby", B2,
                                lambda p: B1 in p["data"]["boxes"]),
                    self.expect("2 same-cause cluster", "dana", "same_cause_nearby", B3,
                                lambda p: {B1, B2} <= set(p["data"]["boxes"]))]
            self.wait(exp)

            # 2b --------------------------------------------------------------------------------
            self.step("09:41", f"chen checks {B2} and acknowledges it as a false alarm; nobody acknowledges {B1}")
            api = next(iter(info["apis"].values()))
            _, listed = _call(f"{api}/boxes/{B2}/alarms?state=active", "GET", "chen", {})
            mine = [a for a in listed.get("alarms", []) if a["cause"] == "residual_current"]
            status, acked = (0, {}) if not mine else _call(
                f"{api}/boxes/{B2}/alarms/{mine[0]['alarm_id']}/ack", "POST", "chen", {},
                {"disposition": "false_alarm", "comment": "rain in the cable duct"})
            disposition = acked.get("alarm", acked).get("disposition")
            self.say(f"      POST /boxes/{B2}/alarms/.../ack -> {status} {disposition}")
            self.checks.append(("2b acknowledge", "ack API accepted", status == 200))
            self.wait([self.expect("2b acknowledge", "hana", "acknowledged", B2,
                                   lambda p: p["data"].get("disposition") == "false_alarm"),
                       self.expect("2b acknowledge", "bo", "reminder", B1),
                       # an SMS carries no data: the phone number is hana's, the text names the alarm
                       self.expect("2b acknowledge", "hana", "", None, lambda p: p.get("channel") == "sms")],
                      timeout=self.step_timeout_s + 3 * ESCALATE_AFTER_S)

            # 3 ---------------------------------------------------------------------------------
            self.step("11:25", f"{C} ({personas[C]}'s building) overheats, alarms, then falls silent (burned)")
            fleet.burn(C)
            self.wait([self.expect("3 offline after alarm", "erik", "alarm", C),
                       self.expect("3 offline after alarm", "erik", "offline_after_alarm", C,
                                   lambda p: p["data"]["reason"] != "CLIENT_INITIATED_DISCONNECT")])

            # 4 ---------------------------------------------------------------------------------
            self.step("14:05", f"fire: it starts at {F} ({personas[F]}'s building) and spreads to adjacent boxes")
            burned = fleet.spread_fire(F, hops=2, delay_s=4.0)
            self.say(f"      burning, in turn: {', '.join(burned)}")
            exp = [self.expect("4 fire", owner[b], "alarm", b) for b in burned]
            exp += [self.expect("4 fire", owner[b], "offline_after_alarm", b) for b in burned]
            exp += [self.expect("4 fire", owner[burned[-1]], "same_cause_nearby", burned[-1])]
            exp += [self.expect("4 fire", "grace", "neighbour_outage", None,
                                lambda p: len(set(p["data"]["offline_boxes"]) & set(burned)) >= 2)]
            self.wait(exp, timeout=self.step_timeout_s + 30)
            if self.screenshot is not None:
                shot = take_screenshot(str(info["ops_console"]), self.screenshot, grid.position(7, 10))
                self.say(f"      operator console: {shot}")

            # 5 ---------------------------------------------------------------------------------
            self.step("14:07", f"grace, warned that the boxes next to hers went dark, powers off {G} from the app")
            status, body = _call(f"{api}/boxes/{G}/power-off", "POST", "grace", {"Idempotency-Key": "grace-14-07-fire"})
            self.say(f"      POST /boxes/{G}/power-off -> {status} {body.get('status', body)}")
            self.checks.append(("5 remote power-off", "command API accepted the order", status in (200, 201)))
            self.wait([self.expect("5 remote power-off", "grace", "power_off_result", G,
                                   lambda p: p["data"]["status"] == "succeeded")])
            agent = fleet.agents[G]
            opened = not agent.box.contactor_closed
            self.say(f"      {G}: contactor {'OPEN' if opened else 'still closed'}; box reported "
                     f"{json.dumps(agent.reports[-1]) if agent.reports else '-'}")
            self.checks.append(("5 remote power-off", f"{G} contactor open", opened))
            _, cmd = _call(f"{api}/boxes/{G}/commands/{body.get('command_id', '-')}", "GET", "grace", {})
            self.checks.append(("5 remote power-off", "command settled 'succeeded'", cmd.get("status") == "succeeded"))

            # 6 ---------------------------------------------------------------------------------
            self.step("16:30", f"the fire is out and power is back: {', '.join(burned)} reconnect")
            fleet.restore_power(burned)
            self.wait([self.expect("6 all clear", "grace", "all_clear", None),
                       *[self.expect("6 all clear", owner[b], "box_back_online", b) for b in burned]],
                      timeout=self.step_timeout_s + 30)
            time.sleep(1.0)
            stop.set()
            watcher.join(2)
            stats = lc.console("/stats")
            code = self.report(stats, time.monotonic() - started)
            passed = code == 0
            if self.keep:
                self.keep_up(lc)
            return code
        finally:
            stop.set()
            if fleet is not None:
                fleet.stop(clean=True)
            lc.stop()
            if passed and not self.keep and self.state_dir is None:
                shutil.rmtree(state, ignore_errors=True)  # kept when something failed: the logs are there

    # ---------------------------------------------------------------- report
    def report(self, stats: dict[str, Any], elapsed: float) -> int:
        self.say("\n" + "=" * 100)
        self.say("What each phone received (personas; the owners of other boxes are owner-BX-...):")
        by_client: dict[str, list[dict[str, Any]]] = {}
        for p in self.pushes:
            by_client.setdefault(p["client"], []).append(p)
        for client in sorted(by_client, key=lambda c: (c.startswith("owner-"), c)):
            items = by_client[client]
            if client.startswith("owner-") and not any(p["kind"] != "neighbour_outage" for p in items):
                continue
            self.say(f"  {client}")
            for p in items:
                self.say(f"    {format_push(p, self.t0_ms)}")
        neighbours = [c for c, items in by_client.items() if c.startswith("owner-")
                      and all(p["kind"] == "neighbour_outage" for p in items)]
        if neighbours:
            self.say(f"  ... and {len(neighbours)} neighbours' phones got the fourth alarm (neighbour_outage) only")

        self.say("\nExpected notifications:")
        ok_all = True
        for e in self.expects:
            got = e.push is not None
            ok_all &= got
            after = f"{e.push['latency_ms']} ms after {e.push['trigger'].split(' ')[0]}" if got and e.push and \
                e.push.get("latency_ms") is not None else ""
            self.say(f"  [{'ok' if got else 'MISSING'}] {e.step:<22} {e.label:<52} {after}")
        for step, what, ok in self.checks:
            ok_all &= ok
            self.say(f"  [{'ok' if ok else 'FAILED'}] {step:<22} {what}")
        # an SMS carries no kind (it is text only): counted as what it is
        kinds = Counter(p["kind"] or p.get("channel") or "?" for p in self.pushes)
        lat = sorted(p["latency_ms"] for p in self.pushes if p.get("latency_ms") is not None
                     and p["trigger"].startswith("rule:AlarmIngest"))
        self.say("\nSummary:")
        self.say(f"  pushes: {len(self.pushes)} to {len({p['client'] for p in self.pushes})} phones - "
                 + ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
        if lat:
            self.say(f"  alarm published over MQTT -> push on the phone: p50 {lat[len(lat) // 2]} ms, "
                     f"max {lat[-1]} ms ({len(lat)} pushes)")
        fn = stats.get("functions", {})
        self.say("  invocations: " + ", ".join(f"{k.removesuffix('Function')} {v['invocations']}"
                                                + (f" ({v['errors']} errors)" if v["errors"] else "")
                                                for k, v in fn.items()))
        self.say(f"  rules matched: {stats.get('rules_matched')}; shadow updates accepted "
                 f"{stats.get('shadow', {}).get('accepted')}")
        met = sum(e.push is not None for e in self.expects)
        self.say(f"  {met}/{len(self.expects)} expected notifications arrived; demo ran {elapsed:.0f} s -> "
                 f"{'PASS' if ok_all else 'FAIL'}")
        return 0 if ok_all else 1

    def keep_up(self, lc: LocalCloudProcess) -> None:
        info = lc.info
        self.say("\n--keep: the local cloud stays up (Ctrl-C to stop). Point your tools at it:")
        self.say(f"  operator console: {info.get('ops_console')}   (sign in as <name>@default, e.g. ann@default)")
        self.say(f"  export AWS_ENDPOINT_URL={info['moto']} AWS_ENDPOINT_URL_IOT_DATA_PLANE={info['iot_data']} "
                 "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1")
        self.say(f"  aws --endpoint-url {info['moto']} dynamodb list-tables")
        self.say(f"  mosquitto_sub -h 127.0.0.1 -p {info['mqtt']['port']} -t 'boxwatch/#' -t '$aws/#' -v")
        self.say(f"  curl -H 'Authorization: Bearer local:grace' {next(iter(info['apis'].values()))}/me/boxes")
        self.say(f"  curl {info['console']}/inbox")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            self.say("stopping")


def take_screenshot(console_url: str, path: Path, center: tuple[float, float], user: str = "ann@default") -> str:
    """The operator console as `user` sees it now, around `center`, saved as a PNG (Playwright
    driving Debian's Chromium, as the browser tests do). Returns what happened, for the script."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return "no screenshot: playwright is not installed (make install)"
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        return "no screenshot: chromium is not installed (apt-get install chromium)"
    path.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 860}).new_page()
            page.goto(f"{console_url}#view={center[0]},{center[1]},16")
            page.fill("#signin-user", user)
            page.click("#signin-submit")
            page.wait_for_selector("body[data-ready='1']", timeout=30_000)
            page.wait_for_selector(".box-marker:not(.state-normal)", timeout=15_000)
            time.sleep(1.5)  # the alarm list and the incident areas fill in after the markers
            page.screenshot(path=str(path))
        except Exception as exc:  # a screenshot is a picture for people: it never fails the day
            return f"no screenshot: {type(exc).__name__}: {str(exc)[:200]}"
        finally:
            browser.close()
    return f"screenshot {path}"


def _call(url: str, method: str, sub: str, headers: dict[str, str],
          body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    extra = {"Content-Type": "application/json"} if body is not None else {}
    req = urllib.request.Request(url, method=method, data=data,
                                 headers={"Authorization": f"Bearer local:{sub}", **extra, **headers})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def main(boxes: int = 300, keep: bool = False, screenshot: str = "") -> int:
    return Demo(boxes=boxes, keep=keep, screenshot=Path(screenshot) if screenshot else None).run()
