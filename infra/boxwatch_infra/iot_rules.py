"""AWS IoT rules, as the template declares them, evaluated locally.

Supports the subset of IoT SQL (2016-03-23) the project uses and fails loudly at load time on
anything else: `SELECT *, <expr> AS <name>, ... FROM '<topic filter>' [WHERE <cond>]` where
<expr> is `*`, `topic()`, `topic(n)`, `timestamp()`, `clientid()`, `principal()`, a dotted field
path or a literal, and <cond> compares such expressions with = <> != < > <= >= or tests
`isUndefined(<path>)`, joined by AND/OR/NOT.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from boxwatch_infra.template import Template


class UnsupportedSql(ValueError):
    pass


@dataclass(frozen=True)
class MessageContext:
    topic: str
    payload: Any  # parsed JSON (dict) or raw bytes
    client_id: str
    now_ms: int
    principal: str = ""


Expr = Callable[[MessageContext], Any]

_FUNC = re.compile(r"^(topic|timestamp|clientid|principal)\(\s*(\d*)\s*\)$", re.I)
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _split_top(text: str, sep: str = ",") -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth, quote = 0, False
    for ch in text:
        if ch == "'":
            quote = not quote
        elif not quote and ch == "(":
            depth += 1
        elif not quote and ch == ")":
            depth -= 1
        if ch == sep and depth == 0 and not quote:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def _expr(text: str) -> Expr:
    text = text.strip()
    m = _FUNC.match(text)
    if m:
        fn, arg = m.group(1).lower(), m.group(2)
        if fn == "topic":
            if not arg:
                return lambda c: c.topic
            n = int(arg)
            return lambda c: (c.topic.split("/")[n - 1] if len(c.topic.split("/")) >= n else None)
        if fn == "timestamp":
            return lambda c: c.now_ms
        if fn == "clientid":
            return lambda c: c.client_id
        return lambda c: c.principal
    if text.startswith("'") and text.endswith("'"):
        lit = text[1:-1]
        return lambda c: lit
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        num = float(text) if "." in text else int(text)
        return lambda c: num
    if text.lower() in ("true", "false"):
        b = text.lower() == "true"
        return lambda c: b
    if _PATH.match(text):
        path = text.split(".")

        def get(c: MessageContext) -> Any:
            cur = c.payload
            for p in path:
                if not isinstance(cur, dict):
                    return None
                cur = cur.get(p)
            return cur

        return get
    raise UnsupportedSql(f"unsupported IoT SQL expression: {text!r}")


_CMP = {
    "=": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a is not None and b is not None and a < b,
    ">": lambda a, b: a is not None and b is not None and a > b,
    "<=": lambda a, b: a is not None and b is not None and a <= b,
    ">=": lambda a, b: a is not None and b is not None and a >= b,
}


def _cond(text: str) -> Callable[[MessageContext], bool]:
    text = text.strip()
    for op in (" OR ", " AND "):
        parts = re.split(op, text, flags=re.I)
        if len(parts) > 1:
            subs = [_cond(p) for p in parts]
            if op == " OR ":
                return lambda c: any(s(c) for s in subs)
            return lambda c: all(s(c) for s in subs)
    if text.upper().startswith("NOT "):
        inner = _cond(text[4:])
        return lambda c: not inner(c)
    m = re.fullmatch(r"isUndefined\(\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\)", text, re.I)
    if m:
        path = m.group(1).split(".")

        def undefined(c: MessageContext) -> bool:
            # a key that is absent (not one that is null: IoT SQL's Null is defined)
            cur = c.payload
            for p in path:
                if not isinstance(cur, dict) or p not in cur:
                    return True
                cur = cur[p]
            return False

        return undefined
    m = re.match(r"^(.+?)\s*(<>|!=|<=|>=|=|<|>)\s*(.+)$", text)
    if not m:
        raise UnsupportedSql(f"unsupported IoT SQL condition: {text!r}")
    left, op, right = _expr(m.group(1)), m.group(2), _expr(m.group(3))
    cmp = _CMP[op]
    return lambda c: bool(cmp(left(c), right(c)))


def topic_matches(topic_filter: str, topic: str) -> bool:
    f, t = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(f) == len(t)


@dataclass
class Rule:
    name: str
    function: str  # logical id of the target function
    sql: str
    topic_filter: str
    star: bool
    items: list[tuple[str, Expr]]
    where: Callable[[MessageContext], bool] | None
    error_queue: str | None = None  # logical id of the SQS queue of the rule's ErrorAction

    @classmethod
    def parse(cls, name: str, function: str, sql: str) -> Rule:
        m = re.match(r"^\s*SELECT\s+(.+?)\s+FROM\s+'([^']+)'(?:\s+WHERE\s+(.+?))?\s*$", sql, re.I | re.S)
        if not m:
            raise UnsupportedSql(f"rule {name}: cannot parse {sql!r}")
        star, items = False, []
        for item in _split_top(m.group(1)):
            if item == "*":
                star = True
                continue
            am = re.match(r"^(.+?)\s+AS\s+([A-Za-z_][A-Za-z0-9_]*)$", item, re.I | re.S)
            if am:
                items.append((am.group(2), _expr(am.group(1))))
            elif _PATH.match(item):
                items.append((item.split(".")[-1], _expr(item)))
            else:
                raise UnsupportedSql(f"rule {name}: select item needs AS: {item!r}")
        where = _cond(m.group(3)) if m.group(3) else None
        return cls(name, function, sql, m.group(2), star, items, where)

    def apply(self, ctx: MessageContext) -> dict[str, Any] | None:
        """The event the rule would deliver to its action, or None when it does not match."""
        if not topic_matches(self.topic_filter, ctx.topic):
            return None
        if self.where is not None and not self.where(ctx):
            return None
        out: dict[str, Any] = {}
        if self.star:
            if not isinstance(ctx.payload, dict):
                raise ValueError("payload is not a JSON object")
            out.update(ctx.payload)
        for name, expr in self.items:
            out[name] = expr(ctx)  # the alias wins over a payload key of the same name
        return out


def parse_payload(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return raw if isinstance(raw, bytes) else raw.encode()


def rules_from_template(template: Template) -> list[Rule]:
    """Every IoTRule event of every function, plus AWS::IoT::TopicRule resources with a Lambda action."""
    rules = []
    for logical, fn in template.functions.items():
        for ev_name, props in fn.events_of_type("IoTRule").items():
            rules.append(Rule.parse(f"{logical}{ev_name}", logical, str(template.resolve(props["Sql"]))))
    for logical, res in template.resources_of_type("AWS::IoT::TopicRule").items():
        payload = res["Properties"]["TopicRulePayload"]
        for action in payload.get("Actions", []):
            if "Lambda" in action:
                fn_ref = action["Lambda"]["FunctionArn"]
                target = fn_ref["Fn::GetAtt"][0] if isinstance(fn_ref, dict) and "Fn::GetAtt" in fn_ref else None
                if target is None:
                    raise UnsupportedSql(f"rule {logical}: Lambda action must GetAtt a template function")
                rule = Rule.parse(logical, target, str(template.resolve(payload["Sql"])))
                queue_ref = payload.get("ErrorAction", {}).get("Sqs", {}).get("QueueUrl")
                rule.error_queue = queue_ref.get("Ref") if isinstance(queue_ref, dict) else None
                rules.append(rule)
    return rules
