"""Notification rendering: the text in the client's language, the SNS JSON structure."""

from __future__ import annotations

import json

from boxwatch.notify import Notification, local_time


def alarm_note() -> Notification:
    return Notification(
        kind="alarm", box_id="BX-1", data={"cause": "overtemp", "seq": 1, "boxes": []}, at_ms=1_767_225_600_000,
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
        kind="same_cause_nearby", box_id="BX-2", data={"boxes": ["BX-1"]}, at_ms=1_767_225_600_000,
        context={"cause": "overtemp", "box_name": "No.5", "count": 1, "radius_m": 1000, "window_min": 10,
                 "boxes_named": [{"id": "BX-1", "name": "No.3 building", "distance_m": 899.6}]},
    )
    assert "No.3 building (BX-1, 900 m)" in note.render("en")[1]
    assert "No.3 building (BX-1, 900米)" in note.render("zh-CN")[1]


def test_a_second_alarm_with_hundreds_of_neighbours_fits_in_a_push() -> None:
    from boxwatch.alarms import Neighbour, nearby_notification
    from boxwatch.events import AlarmEvent
    from boxwatch.models import BoxItem
    from boxwatch.settings import Settings

    # Given 800 boxes nearby with the same cause (a heat wave over a dense district)
    box = BoxItem("BX-1", name="No.1 building", address="", lat=39.98, lng=116.31, timezone="Asia/Shanghai",
                  alarm_cell="x", area_cell="x")
    alarm = AlarmEvent.parse({"thing": "BX-1", "v": 1, "seq": 3, "cause": "overtemp", "alarm_time": 1_767_225_600_000,
                              "received_at": 1_767_225_600_100, "value": 92.5, "threshold": 80.0})
    near = [Neighbour(f"BX-{i + 2:05d}", f"Residential building No. {i} of the district", 10.0 + i,
                      1_767_225_500_000, 1) for i in range(800)]
    # When the box's clients are told
    note = nearby_notification(box, alarm, near, Settings())
    doc = json.loads(note.message("zh-CN"))
    # Then the push is within 4 KB, lists the nearest and counts all
    assert len(doc["GCM"].encode()) <= 4096 and len(doc["APNS"].encode()) <= 4096
    data = json.loads(json.loads(doc["GCM"])["data"]["boxwatch"])
    assert data["count"] == 800 and data["boxes"][0] == "BX-00002" and len(data["boxes"]) == 30
    assert "另外 795 个" in note.render("zh-CN")[1]


def test_a_nearby_update_names_the_newcomer_first_and_fits_in_a_push() -> None:
    from boxwatch.alarms import Neighbour, nearby_update_notification
    from boxwatch.events import AlarmEvent
    from boxwatch.models import BoxItem
    from boxwatch.settings import Settings

    # Given a newcomer BX-NEW and 800 neighbour boxes, the recipient's own box among them
    box = BoxItem("BX-NEW", name="Newcomer building", address="", lat=39.98, lng=116.31, timezone="Asia/Shanghai",
                  alarm_cell="x", area_cell="x")
    alarm = AlarmEvent.parse({"thing": "BX-NEW", "v": 1, "seq": 9, "cause": "overtemp",
                              "alarm_time": 1_767_225_600_000, "received_at": 1_767_225_600_100, "value": 92.5,
                              "threshold": 80.0})
    near = [Neighbour(f"BX-{i:05d}", f"Residential building No. {i} of the district", 10.0 + i,
                      1_767_225_500_000, 1, 39.98 + i * 1e-5, 116.31) for i in range(800)]
    mine = near[3]
    # When the recipient's clients are told
    note = nearby_update_notification(box, alarm, mine, near, Settings())
    # Then the data names their box, the newcomer first, the others nearest first, and counts all
    data = note.data
    assert note.box_id == "BX-00003" and data["seq"] == 9 and data["cause"] == "overtemp"
    assert data["boxes"][:3] == ["BX-NEW", "BX-00000", "BX-00001"] and "BX-00003" not in data["boxes"]
    assert data["count"] == 800 and len(data["boxes"]) == 30
    for locale in ("zh-CN", "en"):
        doc = json.loads(note.message(locale))
        assert len(doc["GCM"].encode()) <= 4096 and len(doc["APNS"].encode()) <= 4096
    title, body = note.render("en")
    assert "Newcomer building" in title and "Residential building No. 3" in title
    assert "Newcomer building (BX-NEW, 13 m)" in body and "and 795 more" in body
    assert "继您的配电箱报警之后" in note.render("zh-CN")[1]


def test_an_alarm_summary_tells_count_cause_and_window() -> None:
    from boxwatch.alarms import summary_notification
    from boxwatch.models import DueItem

    item = DueItem("DUE#alarm_summary#BX-1#overcurrent#1767225600000", kind="alarm_summary",
                   subject="BX-1#overcurrent#1767225600000", due_at=1_767_225_900_000, box_id="BX-1", tally=27,
                   data={"cause": "overcurrent", "window_start": 1_767_225_600_000, "window_end": 1_767_225_900_000,
                         "box_name": "Workshop 1", "timezone": "Asia/Shanghai"})
    note = summary_notification(item)
    assert note.data == {"cause": "overcurrent", "count": 27, "window_start": 1_767_225_600_000,
                         "window_end": 1_767_225_900_000, "boxes": []}
    title, body = note.render("en")
    assert title == "27 more overcurrent alarms at Workshop 1"
    assert "08:00:00" in body and "08:05:00" in body and "5 min" in body
    assert "另有 27 条过流报警" in note.render("zh-CN")[0]
    assert len(json.loads(note.message("zh-CN"))["GCM"].encode()) <= 4096
