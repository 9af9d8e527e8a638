"""The operator console in a real browser (Playwright for Python driving Debian's Chromium) against
the local cloud, with a small fleet of plain MQTT boxes: what an operator sees and does.

Screenshots go to test-artifacts/console/ (git-ignored). Skipped when Chromium or Playwright is
missing (`make install` installs both).
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from boxwatch.registry import BoxSpec
from boxwatch_infra.localcloud.cloud import LocalCloudProcess
from boxwatch_infra.localcloud.seed import ClientSpec, provision
from tests.e2e.test_local_cloud import Box, wait_for

pytestmark = pytest.mark.e2e
playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "console"
CENTER = (31.2300, 121.4700)  # away from the other e2e tests' boxes (Haidian): only this fleet in view
FLEET = [f"BX-OPS-{i}" for i in range(1, 6)]
VIEW = f"#view={CENTER[0]},{CENTER[1]},16"


def spec(i: int, box_id: str, org: str = "acme") -> BoxSpec:
    # 120 m apart on a line: one marker each at zoom 16 (clusters form only when zoomed out)
    return BoxSpec(id=box_id, name=f"Tower {i}", address=f"{i} Century Ave", lat=CENTER[0],
                   lng=round(CENTER[1] - 0.0025 + i * 0.00125, 6), org=org)


@pytest.fixture(scope="module")
def fleet(local_cloud: LocalCloudProcess, cloud_env_module: dict[str, Any]) -> Iterator[dict[str, Box]]:
    # Given five boxes of organisation acme, each bound to a phone, and connected over MQTT
    provision(cloud_env_module, [spec(i, b) for i, b in enumerate(FLEET, start=1)],
              [ClientSpec(f"phone-{b}", (b,)) for b in FLEET])
    boxes = {b: Box(cloud_env_module["mqtt"]["port"], b) for b in FLEET}
    for b, box in boxes.items():
        box.subscribe_shadow()
        box.publish(f"$aws/things/{b}/shadow/update", {"state": {"reported": {"power": "on", "contactor": "closed"}}})
    try:
        yield boxes
    finally:
        for box in boxes.values():
            box.close()


@pytest.fixture(scope="module")
def cloud_env_module(local_cloud: LocalCloudProcess) -> Iterator[dict[str, Any]]:
    mp = pytest.MonkeyPatch()
    for k, v in local_cloud.client_env().items():
        mp.setenv(k, v)
    mp.delenv("AWS_SESSION_TOKEN", raising=False)
    try:
        yield local_cloud.info
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM,
                               args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        try:
            yield b
        finally:
            b.close()


def sign_in(browser: Any, info: dict[str, Any], user: str) -> Any:
    page = browser.new_context(viewport={"width": 1400, "height": 860}).new_page()
    # what the page says goes to the test's output: a console that never gets ready says why
    page.on("console", lambda m: print("console:", m.type, m.text[:500]))
    page.on("pageerror", lambda e: print("page error:", str(e)[:500]))
    page.on("response", lambda r: print("response:", r.status, r.url[:200]) if r.status >= 400 else None)
    page.goto(info["ops_console"] + VIEW)
    page.fill("#signin-user", user)
    page.click("#signin-submit")
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    return page


def ops(info: dict[str, Any], path: str, user: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    api = next(iter(info["apis"].values()))
    req = urllib.request.Request(api + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer local:{user}+operators",
                                          "Idempotency-Key": f"test-{time.time_ns()}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def markers(page: Any, state: str | None = None) -> int:
    return int(page.locator(".box-marker" + (f".state-{state}" if state else "")).count())


def test_an_operator_sees_the_fleet_an_alarm_within_5_s_acks_it_and_powers_a_box_off(
        local_cloud: LocalCloudProcess, fleet: dict[str, Box], browser: Any) -> None:
    info = local_cloud.info
    # When ann of acme signs in
    page = sign_in(browser, info, "ann@acme")
    # Then the map shows one marker per box, all normal
    wait_for(lambda: markers(page) == len(FLEET), timeout=15)
    assert markers(page, "normal") == len(FLEET)
    page.screenshot(path=str(ARTIFACTS / "1-fleet.png"))

    # When a box raises an alarm
    t0 = time.monotonic()
    fleet["BX-OPS-3"].publish("boxwatch/boxes/BX-OPS-3/alarms", {
        "v": 1, "seq": 1, "cause": "overtemp", "alarm_time": int(time.time() * 1000), "value": 92.5,
        "threshold": 80.0, "unit": "degC"})
    # Then within 5 s its row is in the alarm list and its marker has the alarm colour, with a toast
    page.wait_for_selector("#alarms tr[data-box='BX-OPS-3']", timeout=5_000)
    wait_for(lambda: markers(page, "alarm_unacked") == 1, timeout=max(0.1, 5 - (time.monotonic() - t0)))
    shown_in = time.monotonic() - t0
    assert shown_in < 5.0, shown_in
    assert page.locator(".toast").count() >= 1
    assert markers(page, "normal") == len(FLEET) - 1
    page.screenshot(path=str(ARTIFACTS / "2-alarm.png"))

    # When ann opens it and acknowledges it as a false alarm
    page.click("#alarms tr[data-box='BX-OPS-3']")
    page.wait_for_selector("#panel[data-box='BX-OPS-3'] .ack-form .ack")
    page.select_option("#panel .ack-form .disposition", "false_alarm")
    page.fill("#panel .ack-form .comment", "cooking smoke")
    page.click("#panel .ack-form .ack")
    # Then the box's phone is told `acknowledged`, and the marker turns to the acknowledged colour
    told = wait_for(lambda: [p for p in local_cloud.console("/inbox/phone-BX-OPS-3")["pushes"]
                             if p["kind"] == "acknowledged"], timeout=15)
    assert told[0]["box"] == "BX-OPS-3"
    wait_for(lambda: markers(page, "alarm_acked") == 1, timeout=10)
    page.wait_for_selector("#alarms tr.acked[data-box='BX-OPS-3']")
    status, listed = ops(info, "/ops/alarms?state=active", "ann@acme")
    [acked] = [a for a in listed["alarms"] if a["box_id"] == "BX-OPS-3"]
    assert status == 200 and acked["disposition"] == "false_alarm" and acked["acked_by"] == "ann"
    page.screenshot(path=str(ARTIFACTS / "3-acked.png"))

    # When she asks for a power-off, typing a wrong id first
    page.wait_for_selector("#panel[data-box='BX-OPS-3'] #power-off")
    page.click("#power-off")
    page.fill("#confirm-input", "BX-OPS-4")
    page.click("#confirm-ok")
    # Then nothing is ordered: the confirmation is refused
    page.wait_for_function("document.querySelector('#power-off-result').textContent.length > 0")
    assert "BX-OPS-3" not in page.inner_text("#power-off-result")
    assert not [d for t, d in fleet["BX-OPS-3"].received if t.endswith("/update/delta")]
    # When she types the box id
    page.click("#power-off")
    page.fill("#confirm-input", "BX-OPS-3")
    page.click("#confirm-ok")
    # Then the order reaches the box through its shadow; the box opens its contactor and reports
    box = fleet["BX-OPS-3"]
    delta = wait_for(lambda: [d for t, d in box.received if t.endswith("/update/delta")], timeout=15)
    order = delta[0]["state"]
    assert order["power"] == "off"
    box.publish("$aws/things/BX-OPS-3/shadow/update", {"state": {"reported": {
        "power": "off", "contactor": "open", "command_id": order["command_id"], "command_status": "done",
        "at": int(time.time() * 1000)}}})
    page.wait_for_function("document.querySelector('#power-off-result').textContent.includes('succeeded')",
                           timeout=20_000)
    shadow = json.loads(boto3.client("iot-data", endpoint_url=info["iot_data"]).get_thing_shadow(
        thingName="BX-OPS-3")["payload"].read())
    assert shadow["state"]["reported"]["contactor"] == "open"
    # and the audit says an operator asked
    status, audit = ops(info, "/ops/commands?box_id=BX-OPS-3", "ann@acme")
    assert status == 200 and audit["commands"][0]["requested_by_role"] == "operator"
    assert audit["commands"][0]["status"] == "succeeded"
    # and the map's box shows the contactor open, as the box reported it
    status, shown = ops(info, "/ops/boxes/BX-OPS-3", "ann@acme")
    assert status == 200 and shown["contactor"] == "open"
    page.screenshot(path=str(ARTIFACTS / "4-power-off.png"))

    # An operator of another organisation sees none of it
    other = sign_in(browser, info, "oscar@globex")
    time.sleep(2.5)  # a poll of the change feed
    assert markers(other) == 0
    assert other.locator("#alarms tbody tr").count() == 0
    assert ops(info, "/ops/boxes/BX-OPS-3", "oscar@globex")[0] == 404
    assert ops(info, "/ops/boxes/BX-OPS-3/power-off", "oscar@globex", "POST", {"confirm": "BX-OPS-3"})[0] == 404
    other.screenshot(path=str(ARTIFACTS / "5-other-org.png"))


def test_bad_csv_rows_are_listed_with_their_reasons(local_cloud: LocalCloudProcess, fleet: dict[str, Box],
                                                    browser: Any) -> None:
    page = sign_in(browser, local_cloud.info, "ann@acme")
    page.click("header nav button[data-view='registry']")
    # When ann imports a CSV with one good row and three bad ones
    page.fill("#csv-text", "\n".join([
        "id,name,address,lat,lng,timezone,org",
        f"BX-OPS-NEW,New tower,9 Century Ave,{CENTER[0] + 0.001},{CENTER[1]},Asia/Shanghai,",
        "BX-OPS-BAD,Bad latitude,,123.0,121.47,,",
        "bad id!,Bad id,,31.23,121.47,,",
        "BX-OPS-X,Other org,,31.23,121.47,,globex",
    ]))
    page.click("#csv-import")
    page.wait_for_selector("#refused tbody tr.refused-row")
    # Then the good row is imported and each bad one is listed with its line and reason
    rows = page.locator("#refused tbody tr")
    assert rows.count() == 3
    text = page.inner_text("#refused")
    assert "lat" in text and "id" in text and "org" in text
    assert "1" in page.inner_text("#csv-result")
    page.screenshot(path=str(ARTIFACTS / "6-import.png"))
    status, box = ops(local_cloud.info, "/ops/boxes/BX-OPS-NEW", "ann@acme")
    assert status == 200 and box["org"] == "acme"
