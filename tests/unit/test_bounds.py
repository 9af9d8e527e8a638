"""Nothing unbounded from a box: strings are printable and bounded, and a push fits 4 KB whatever
a box (or a registry entry) put into it."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boxwatch import bounds
from boxwatch.events import AlarmEvent
from boxwatch.notify import PUSH_MAX_BYTES, STATUS_ZH, TEMPLATES, Notification

HOSTILE = [
    "x" * 2000,
    "expired\nERROR forged log line\r\n{\"level\": \"ERROR\"}",
    "\x1b[31mred\x1b[0m\x00\x07",
    "\u202eeman\u202c",  # right-to-left override: a name read backwards on the phone
    "a\u200bb\u200dc\ufeff",  # zero-width characters
    "断电" * 1500,  # 3 bytes each in UTF-8
    "\"\\" * 1500,  # every character escaped twice in the FCM body (JSON in JSON)
    "\ud800",  # a lone surrogate
    "😀" * 1100,
]


def printable(s: str) -> bool:
    return all(unicodedata.category(ch) not in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"} for ch in s)


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_text_is_printable_and_bounded(value: str) -> None:
    out = bounds.text(value, 200)
    assert len(out) <= 200 and printable(out) and "\n" not in out
    assert out == out.strip() and "  " not in out


def test_text_keeps_ordinary_words_and_marks_a_cut() -> None:
    assert bounds.text("  contactor   welded ", 200) == "contactor welded"
    assert bounds.text("线缆温度过高", 200) == "线缆温度过高"
    assert bounds.text("abcdef", 4) == "abc…"
    assert bounds.optional_text("\x00\x01", 10) is None and bounds.optional_text(None, 10) is None


@given(st.text(max_size=3000), st.integers(1, 600))
def test_text_never_exceeds_its_limit(value: str, limit: int) -> None:
    out = bounds.text(value, limit)
    assert len(out) <= limit and printable(out)


@given(st.text(max_size=2000), st.integers(0, 5000))
def test_cut_utf8_fits_its_bytes(value: str, max_bytes: int) -> None:
    value = value.encode("utf-8", "ignore").decode()
    out = bounds.cut_utf8(value, max_bytes)
    assert len(out.encode()) <= max(max_bytes, 0)
    assert value.startswith(out.removesuffix(bounds.ELLIPSIS))


def test_report_fields_keep_only_the_named_scalars() -> None:
    report = {"power": "off", "contactor": "open\n", "at": 5, "reason": "r" * 900, "junk": "x" * 10_000,
              "command_status": {"nested": "doc"}, "command_id": float("nan")}
    out = bounds.fields(report, ("power", "contactor", "at", "reason", "command_status", "command_id"), 200)
    assert out == {"power": "off", "contactor": "open", "at": 5, "reason": "r" * 199 + "…"}


# ------------------------------------------------------------------------------------------ pushes
hostile_text = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=3000))
CONTEXT_KEYS = ["box_name", "address", "reason", "status", "command_id", "cause", "unit", "local_time",
                "cause_name", "box_list", "status_zh", "actor", "disposition", "alarm_id", "box_id", "dark_list",
                "first_local"]


def sizes(note: Notification, locale: str) -> tuple[int, int]:
    doc = json.loads(note.message(locale))
    return len(doc["GCM"].encode()), len(doc["APNS"].encode())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(TEMPLATES)), locale=st.sampled_from(["en", "zh-CN"]),
       strings=st.dictionaries(st.sampled_from(CONTEXT_KEYS), hostile_text),
       names=st.lists(hostile_text, max_size=40), ids=st.lists(st.text(min_size=1, max_size=128), max_size=60))
def test_a_push_fits_4kb_whatever_it_carries(kind: str, locale: str, strings: dict[str, str], names: list[str],
                                             ids: list[str]) -> None:
    # Given a notification of any kind whose every string may be hostile and whose lists are long
    context: dict[str, Any] = {"value": 1.5, "threshold": 1.0, "lat": 39.9, "lng": 116.3, "radius_m": 1000,
                               "window_min": 10, "minutes_after": 1.0, "alarm_seq": 1, "span_s": 5,
                               "count": len(names), "cause": "overtemp", "unit": "degC", "box_name": "No.3",
                               "address": "", "local_time": "2026-01-01 08:00:00 CST", "reason": "",
                               "status": "refused", "command_id": "c-1", "start_local": "08:00", "end_local": "08:10",
                               "minutes": 10.0, "newcomer_name": "No.4", "actor": "zhang", "disposition": "real",
                               "first_local": "08:00", "box_id": "BX-1", "alarm_id": "1767225600000.1",
                               "back_count": 3, "dark_count": 1, "dark_list": "BX-2", **strings}
    context["boxes_named"] = [{"id": i, "name": n, "distance_m": 1.0} for i, n in zip(ids, names, strict=False)]
    data = {"boxes": ids, "count": len(ids), "reason": strings.get("reason"), "status": strings.get("status", "")}
    note = Notification(kind=kind, box_id="BX-1", data=data, at_ms=1_767_225_600_000, context=context)
    # When it becomes an SNS message / Then neither platform payload exceeds 4 KB
    gcm, apns = sizes(note, locale)
    assert gcm <= PUSH_MAX_BYTES and apns <= PUSH_MAX_BYTES
    # and the app still reads its kind, box and count
    doc = json.loads(note.message(locale))
    sent = json.loads(json.loads(doc["GCM"])["data"]["boxwatch"])
    assert (sent["kind"], sent["box"], sent["count"]) == (kind, "BX-1", len(ids))


def test_a_2000_character_reason_used_to_overflow_the_fcm_body() -> None:
    # Given the power-off result of a box that refused with a 2,000-character reason
    reason = "contactor welded " * 118
    note = Notification(kind="power_off_result", box_id="BX-1", at_ms=1_767_225_600_000,
                        data={"status": "refused", "command_id": "c-" + "0" * 20, "reason": reason, "boxes": []},
                        context={"box_name": "No.3 building", "status": "refused", "command_id": "c-" + "0" * 20,
                                 "reason": reason})
    # Then the push fits, and says as much of the reason as fits
    gcm, apns = sizes(note, "zh-CN")
    assert gcm <= PUSH_MAX_BYTES and apns <= PUSH_MAX_BYTES
    body = json.loads(json.loads(note.message("en"))["GCM"])["notification"]["body"]
    assert body.startswith("Command c-00000000000000000000 for No.3 building: refused. contactor welded")
    assert STATUS_ZH["refused"] in json.loads(json.loads(note.message("zh-CN"))["GCM"])["notification"]["title"]


def test_alarm_labels_from_a_box_are_printable() -> None:
    alarm = AlarmEvent.parse({"thing": "BX-1", "received_at": 2, "seq": 1, "cause": "overtemp", "alarm_time": 1,
                              "value": 1, "threshold": 1, "unit": "\x1b[31m", "circuit": "main\nFAKE LOG\x00"})
    assert alarm.circuit == "main FAKE LOG" and alarm.unit == "[31m"
    blank = AlarmEvent.parse({"thing": "BX-1", "received_at": 2, "seq": 1, "cause": "overtemp", "alarm_time": 1,
                              "value": 1, "threshold": 1, "unit": "\x00"})
    assert blank.unit == "degC"  # nothing printable: the cause's default unit


def test_registry_names_are_printable() -> None:
    from pydantic import ValidationError

    from boxwatch.registry import BoxSpec

    box = BoxSpec(id="BX-1", name="No.3\n\u202ebuilding", address="Zhongguancun\tSt 3\x00", lat=39.98, lng=116.31)
    assert (box.name, box.address) == ("No.3 building", "Zhongguancun St 3")
    with pytest.raises(ValidationError):
        BoxSpec(id="BX-1", name="\x00\u202e", lat=39.98, lng=116.31)
