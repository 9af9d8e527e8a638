"""Notification rendering: the text in the client's language, the SNS JSON structure."""

from __future__ import annotations

import json

from boxwatch.notify import Notification, local_time


def alarm_note() -> Notification:
    return Notification(
        kind="alarm", box_id="BX-1", data={"cause": "overtemp", "seq": 1, "boxes": []},
        context={"cause": "overtemp", "value": 92.5, "threshold": 85.0, "unit": "degC",
                 "local_time": local_time(1_767_225_600_000, "Asia/Shanghai"), "box_name": "No.3 building",
                 "address": "Zhongguancun St 3", "lat": 39.98, "lng": 116.31},
    )


def test_alarm_time_is_in_the_box_local_time() -> None:
    # 2026-01-01T00:00:00Z is 08:00 in Beijing
    assert local_time(1_767_225_600_000, "Asia/Shanghai") == "2026-01-01 08:00:00 CST"


def test_english_text_names_cause_value_threshold_place() -> None:
    title, body = alarm_note().render("en")
    assert "cable overtemperature" in title and "No.3 building" in title
    for part in ("92.5°C", "threshold 85.0°C", "2026-01-01 08:00:00", "Zhongguancun St 3", "39.98000, 116.31000"):
        assert part in body


def test_chinese_text() -> None:
    title, body = alarm_note().render("zh-CN")
    assert "线缆温度过高" in title and "阈值 85.0°C" in body


def test_sns_message_structure_has_default_fcm_and_apns_bodies() -> None:
    doc = json.loads(alarm_note().message("en"))
    assert set(doc) >= {"default", "GCM", "APNS", "APNS_SANDBOX"}
    gcm = json.loads(doc["GCM"])
    assert gcm["notification"]["title"].startswith("Alarm")
    assert json.loads(gcm["data"]["boxwatch"]) == {"kind": "alarm", "box": "BX-1", "cause": "overtemp", "seq": 1,
                                                    "boxes": []}
    apns = json.loads(doc["APNS"])
    assert apns["aps"]["alert"]["body"] == gcm["notification"]["body"]


def test_nearby_list_names_boxes_with_distance() -> None:
    note = Notification(
        kind="same_cause_nearby", box_id="BX-2", data={"boxes": ["BX-1"]},
        context={"cause": "overtemp", "box_name": "No.5", "count": 1, "radius_m": 1000, "window_min": 10,
                 "boxes_named": [{"id": "BX-1", "name": "No.3 building", "distance_m": 899.6}]},
    )
    assert "No.3 building (BX-1, 900 m)" in note.render("en")[1]
    assert "No.3 building (BX-1, 900米)" in note.render("zh-CN")[1]
