"""Rendering notifications for phones and publishing them through SNS.

Each notification is one SNS Publish per client with MessageStructure=json: a `default` text, an
FCM (`GCM`) and an APNS body carrying the same title/body plus the machine-readable `boxwatch`
data that the app (and replay) reads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.exceptions import PynamoDBException, UpdateError

from boxwatch import bounds
from boxwatch.models import BindingItem, SmsQuotaItem, condition_failed

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

CAUSE_NAMES = {
    "en": {
        "overcurrent": "overcurrent",
        "overtemp": "cable overtemperature",
        "residual_current": "residual current (leakage)",
        "overvoltage": "overvoltage",
        "undervoltage": "undervoltage",
        "short_circuit": "short circuit",
        "arc_fault": "arc fault",
    },
    "zh-CN": {
        "overcurrent": "过流",
        "overtemp": "线缆温度过高",
        "residual_current": "剩余电流（漏电）",
        "overvoltage": "过压",
        "undervoltage": "欠压",
        "short_circuit": "短路",
        "arc_fault": "故障电弧",
    },
}

# A push is at most 4 KB (FCM data + notification, APNs payload): a notification about many boxes
# names the nearest few in its text and lists the nearest LISTED_IN_DATA ids in its data, with the
# full count; the complete set stays in DynamoDB (incident members, alarm cell entries).
NAMED_IN_TEXT = 5
LISTED_IN_DATA = 30
# FCM (notification + data) and APNs both refuse a payload over 4 KB: `message()` never builds one
PUSH_MAX_BYTES = 4096

UNIT_NAMES = {"degC": "°C", "A": "A", "mA": "mA", "V": "V", "count": ""}

# (title, body) per kind and locale; placeholders are filled from the notification's context
TEMPLATES: dict[str, dict[str, tuple[str, str]]] = {
    "alarm": {
        "en": (
            "Alarm: {cause_name} at {box_name}",
            "{cause_name}: {value}{unit} (threshold {threshold}{unit}) at {local_time}. "
            "{box_name}, {address} ({lat:.5f}, {lng:.5f}).",
        ),
        "zh-CN": (
            "报警：{box_name} {cause_name}",
            "{cause_name}：测量值 {value}{unit}（阈值 {threshold}{unit}），时间 {local_time}。"
            "位置：{box_name}，{address}（{lat:.5f}, {lng:.5f}）。",
        ),
    },
    "same_cause_nearby": {
        "en": (
            "{count} nearby box(es) also report {cause_name}",
            "Within {radius_m:.0f} m of {box_name} in the last {window_min:.0f} min: {box_list}.",
        ),
        "zh-CN": (
            "附近 {count} 个配电箱同样报警：{cause_name}",
            "{box_name} 周边 {radius_m:.0f} 米内、最近 {window_min:.0f} 分钟内：{box_list}。",
        ),
    },
    "nearby_update": {
        "en": (
            "{newcomer_name} near {box_name} also reports {cause_name}",
            "Since your box's alarm, more boxes within {radius_m:.0f} m report {cause_name}: {box_list}.",
        ),
        "zh-CN": (
            "{box_name} 附近的 {newcomer_name} 也报警：{cause_name}",
            "继您的配电箱报警之后，周边 {radius_m:.0f} 米内又有配电箱报警（{cause_name}）：{box_list}。",
        ),
    },
    "alarm_summary": {
        "en": (
            "{count} more {cause_name} alarms at {box_name}",
            "{box_name} raised {count} more {cause_name} alarm(s) between {start_local} and {end_local} "
            "({minutes:.0f} min), not pushed one by one. Check on site.",
        ),
        "zh-CN": (
            "{box_name} 另有 {count} 条{cause_name}报警",
            "{box_name} 在 {start_local} 至 {end_local}（{minutes:.0f} 分钟）内另有 {count} 条{cause_name}报警，"
            "未逐条推送，请现场检查。",
        ),
    },
    "offline_after_alarm": {
        "en": (
            "{box_name} went offline after its alarm",
            "{box_name} lost its connection at {local_time}, {minutes_after:.1f} min after its "
            "{cause_name} alarm (seq {alarm_seq}). It may have burned or tripped: check on site.",
        ),
        "zh-CN": (
            "{box_name} 报警后离线",
            "{box_name} 于 {local_time} 离线，距{cause_name}报警（序号 {alarm_seq}）{minutes_after:.1f} 分钟，"
            "可能已烧毁或跳闸，请现场检查。",
        ),
    },
    "neighbour_outage": {
        "en": (
            "{count} boxes near {box_name} went offline",
            "{box_list} lost connection within {span_s:.0f} s of each other near {box_name} "
            "(fire or area outage?). You may power off {box_name} from the app.",
        ),
        "zh-CN": (
            "{box_name} 附近 {count} 个配电箱离线",
            "{box_list} 在 {span_s:.0f} 秒内相继离线（可能起火或区域停电）。可在应用中远程断开 {box_name} 的电源。",
        ),
    },
    "reminder": {
        "en": (
            "Still unacknowledged: {cause_name} at {box_name}",
            "The {cause_name} alarm at {box_name} (since {first_local}, {count} alarm(s)) has not been "
            "acknowledged for {minutes:.0f} min. Acknowledge it in the app once checked.",
        ),
        "zh-CN": (
            "报警仍未确认：{box_name} {cause_name}",
            "{box_name} 的{cause_name}报警（自 {first_local} 起，共 {count} 条）已 {minutes:.0f} 分钟无人确认，"
            "核实后请在应用中确认。",
        ),
    },
    "escalation": {
        "en": (
            "Escalation: {cause_name} at {box_name}",
            "Nobody acknowledged the {cause_name} alarm at {box_name} since {first_local} "
            "({minutes:.0f} min). Please check on site. Ref {box_id}/{alarm_id}",
        ),
        "zh-CN": (
            "报警升级：{box_name} {cause_name}",
            "{box_name} 的{cause_name}报警自 {first_local} 起 {minutes:.0f} 分钟无人确认，请立即现场核查。"
            "编号 {box_id}/{alarm_id}",
        ),
    },
    "acknowledged": {
        "en": (
            "{actor} acknowledged: {disposition_name}",
            "{actor} acknowledged the {cause_name} alarm at {box_name} ({first_local}) as {disposition_name}.",
        ),
        "zh-CN": (
            "{actor} 已确认：{disposition_name}",
            "{actor} 已确认 {box_name} 的{cause_name}报警（{first_local}），处理结果：{disposition_name}。",
        ),
    },
    "alarm_cleared": {
        "en": (
            "Cleared: {cause_name} at {box_name}",
            "The {cause_name} alarm at {box_name} (since {first_local}) has cleared after {minutes:.0f} min.",
        ),
        "zh-CN": (
            "报警已解除：{box_name} {cause_name}",
            "{box_name} 的{cause_name}报警（自 {first_local} 起）已于 {minutes:.0f} 分钟后解除。",
        ),
    },
    "box_back_online": {
        "en": (
            "{box_name} is back online",
            "{box_name}, offline after its alarm, reconnected after {minutes:.0f} min.",
        ),
        "zh-CN": (
            "{box_name} 已恢复在线",
            "报警后离线的 {box_name} 已于 {minutes:.0f} 分钟后重新连接。",
        ),
    },
    "all_clear": {
        "en": (
            "All clear: {back_count} box(es) back online",
            "The outage near you is over after {minutes:.0f} min: {back_count} box(es) back online, "
            "{dark_count} still offline: {dark_list}.",
        ),
        "zh-CN": (
            "警报解除：{back_count} 个配电箱已恢复",
            "您附近的离线事件已结束（持续 {minutes:.0f} 分钟）：{back_count} 个配电箱恢复在线，"
            "{dark_count} 个仍离线：{dark_list}。",
        ),
    },
    "power_off_result": {
        "en": ("Power-off {status}: {box_name}", "Command {command_id} for {box_name}: {status}. {reason}"),
        "zh-CN": ("远程断电{status_zh}：{box_name}", "{box_name} 的断电指令 {command_id}：{status_zh}。{reason}"),
    },
}

STATUS_ZH = {"succeeded": "成功", "failed": "失败", "expired": "已过期", "refused": "被拒绝"}
DISPOSITION_NAMES = {
    "en": {"real": "real alarm", "false_alarm": "false alarm", "test": "test", "drill": "drill"},
    "zh-CN": {"real": "真实报警", "false_alarm": "误报", "test": "测试", "drill": "演练"},
}
CAUSE_NAMES["en"].update({"offline_after_alarm": "offline after an alarm", "neighbour_outage": "nearby outage"})
CAUSE_NAMES["zh-CN"].update({"offline_after_alarm": "报警后离线", "neighbour_outage": "附近配电箱离线"})


def local_time(epoch_ms: int, tz: str) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S %Z")


@dataclass(frozen=True)
class Notification:
    """What to tell: `data` is the machine-readable part, `context` fills the text templates."""

    kind: str
    box_id: str
    data: dict[str, Any]
    at_ms: int  # event time (epoch ms) of what is told, never the box's clock: the SMS cap counts in it
    context: dict[str, Any] = field(default_factory=dict)

    def render(self, locale: str) -> tuple[str, str]:
        lang = locale if locale in ("en", "zh-CN") else "en"
        # every string that fills the text is printable and bounded, wherever it came from
        ctx: dict[str, Any] = {k: bounds.text(v, bounds.TEXT_CHARS) if isinstance(v, str) else v
                               for k, v in self.context.items()}
        if "cause" in ctx:
            ctx.setdefault("cause_name", CAUSE_NAMES[lang].get(ctx["cause"], ctx["cause"]))
        if "unit" in ctx:
            ctx["unit"] = UNIT_NAMES.get(ctx["unit"], ctx["unit"] or "")
        if "status" in ctx:
            ctx.setdefault("status_zh", STATUS_ZH.get(ctx["status"], ctx["status"]))
        if "disposition" in ctx:
            ctx.setdefault("disposition_name", DISPOSITION_NAMES[lang].get(ctx["disposition"], ctx["disposition"]))
        if isinstance(ctx.get("boxes_named"), list):
            sep = "、" if lang == "zh-CN" else ", "
            metres = "米" if lang == "zh-CN" else " m"
            named = ctx["boxes_named"][:NAMED_IN_TEXT]
            ctx["box_list"] = sep.join(
                f"{bounds.text(b['name'], bounds.NAME_CHARS)} ({bounds.text(b['id'], bounds.FIELD_CHARS)}"
                + (f", {b['distance_m']:.0f}{metres})" if "distance_m" in b else ")")
                for b in named
            )
            more = int(ctx.get("count", len(ctx["boxes_named"]))) - len(named)
            if more > 0:
                ctx["box_list"] += f"等另外 {more} 个" if lang == "zh-CN" else f" and {more} more"
        title, body = TEMPLATES[self.kind][lang]
        return title.format(**ctx), body.format(**ctx)

    def _platforms(self, title: str, body: str, data: dict[str, Any]) -> tuple[str, str]:
        gcm = {
            "notification": {"title": title, "body": body},
            "data": {"kind": self.kind, "boxwatch": json.dumps(data, ensure_ascii=False)},
            "android": {"priority": "high"},
        }
        apns = {"aps": {"alert": {"title": title, "body": body}, "sound": "default"}, "boxwatch": data}
        return json.dumps(gcm, ensure_ascii=False), json.dumps(apns, ensure_ascii=False)

    def _fitted(self, locale: str) -> tuple[str, str, dict[str, Any], str, str]:
        """Title, body and data cut until both platform payloads fit PUSH_MAX_BYTES, whatever the
        box reported: the body first (the data is what the app reads), then the longest list in
        the data (its `count` stays whole), then its longest string, then the title."""
        title, body = self.render(locale)
        data = bounds.strings_in({"kind": self.kind, "box": self.box_id, **self.data}, bounds.TEXT_CHARS)
        while True:
            gcm, apns = self._platforms(title, body, data)
            over = max(len(gcm.encode()), len(apns.encode())) - PUSH_MAX_BYTES
            if over <= 0:
                return title, body, data, gcm, apns
            lists = [k for k, v in data.items() if isinstance(v, list) and v]
            # a string of quotes or backslashes costs 4 bytes a character once escaped twice (GCM)
            texts = [k for k, v in data.items() if isinstance(v, str) and v and k not in ("kind", "box")]
            if body:
                body = bounds.cut_utf8(body, max(len(body.encode()) - over, 0))
            elif lists:
                key = max(lists, key=lambda k: len(json.dumps(data[k], ensure_ascii=False)))
                data = {**data, key: data[key][: len(data[key]) // 2]}
            elif texts:
                key = max(texts, key=lambda k: len(json.dumps(data[k], ensure_ascii=False)))
                data = {**data, key: data[key][: len(data[key]) // 2]}
            elif title:
                title = bounds.cut_utf8(title, max(len(title.encode()) - over, 0))
            else:
                raise ValueError(f"{self.kind} push cannot fit {PUSH_MAX_BYTES} bytes")  # a bug, not input

    def message(self, locale: str) -> str:
        """The SNS MessageStructure=json document; its FCM and APNs payloads fit PUSH_MAX_BYTES."""
        title, body, data, gcm, apns = self._fitted(locale)
        return json.dumps(
            {
                "default": f"{title}\n{body}",
                "GCM": gcm,
                "APNS": apns,
                "APNS_SANDBOX": apns,
                "email": f"{title}\n\n{body}\n\n{json.dumps(data, ensure_ascii=False)}",
            },
            ensure_ascii=False,
        )


@dataclass
class SendReport:
    sent: list[str] = field(default_factory=list)  # client ids
    disabled: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (client id, error code)
    capped: list[str] = field(default_factory=list)  # SMS recipients over their hour's cap: not sent, final


E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def take_sms(number: str, at_ms: int) -> bool:
    """One SMS of the number's hour (event time), if the hour has one left: a conditional write,
    so concurrent senders never go over `SmsQuotaItem.per_hour` together."""
    hour_end_s = (at_ms // 3_600_000 + 1) * 3600
    try:
        SmsQuotaItem(SmsQuotaItem.key(number, at_ms)).update(
            actions=[SmsQuotaItem.sent.add(1), SmsQuotaItem.expires_at.set(hour_end_s + 86_400)],
            condition=SmsQuotaItem.sent.does_not_exist() | (SmsQuotaItem.sent < SmsQuotaItem.per_hour),
        )
        return True
    except UpdateError as exc:
        if condition_failed(exc):
            return False
        raise


def publish(sns: SNSClient, binding: BindingItem, note: Notification) -> None:
    if binding.target_kind == "sms":
        title, body = note.render(binding.locale)
        sns.publish(PhoneNumber=binding.target, Message=f"{title}: {body}"[:1400])
    else:
        sns.publish(TargetArn=binding.target, MessageStructure="json", Message=note.message(binding.locale))


def send(sns: SNSClient, bindings: list[BindingItem], note: Notification, skip: Collection[str] = (),
         report: SendReport | None = None) -> SendReport:
    """Send one notification to each enabled binding; one client's failure never stops the others.

    A disabled push endpoint (app uninstalled, token expired) is marked on the binding so that we
    stop trying it; other failures are reported for the caller to retry. Clients in `skip` were
    already sent this notification by an earlier attempt. Pass `report` to keep what was sent
    even if something raises half-way (the caller records it for the retry).
    """
    report = report if report is not None else SendReport()
    for binding in bindings:
        if not binding.enabled or binding.client_id in skip:
            continue
        if binding.target_kind == "sms" and not E164.match(binding.target):
            _disable(binding, "InvalidPhoneNumber", report)  # an SMS goes to a phone number or nowhere
            continue
        try:
            # SMS costs money per message: at most per_hour to one number in an hour, whatever happens
            if binding.target_kind == "sms" and not take_sms(binding.target, note.at_ms):
                report.capped.append(binding.client_id)
                continue
            publish(sns, binding, note)
            report.sent.append(binding.client_id)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            if code == "EndpointDisabled":
                _disable(binding, code, report)
            else:
                report.failed.append((binding.client_id, code))
        except BotoCoreError as exc:  # connection/timeout: retryable like a 5xx
            report.failed.append((binding.client_id, type(exc).__name__))
        except PynamoDBException as exc:  # the SMS quota write throttled: retryable
            report.failed.append((binding.client_id, exc.cause_response_code or type(exc).__name__))
    return report


def _disable(binding: BindingItem, reason: str, report: SendReport) -> None:
    """Stop trying a target that cannot be reached (marked on the binding)."""
    report.disabled.append(binding.client_id)
    try:
        binding.update(actions=[BindingItem.enabled.set(False), BindingItem.disabled_reason.set(reason)])
    except PynamoDBException:
        # unmarked, it is tried again on the retry and refused again: no message is lost or doubled
        report.failed.append((binding.client_id, "MarkDisabledFailed"))
