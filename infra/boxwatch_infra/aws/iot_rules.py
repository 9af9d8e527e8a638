"""AWS IoT rules, as the template declares them, evaluated locally.

Supports the subset of IoT SQL (2016-03-23) the project uses and fails loudly at load time on
anything else: `SELECT <item>, ... FROM '<topic filter>' [WHERE <cond>]` where an item is `*`,
`<expr> AS <name>` or a dotted field path, <expr> is `topic()`, `topic(n)`, `timestamp()`,
`clientid()`, `principal()`, `isUndefined(x)`, `isNull(x)`, a dotted field path or a literal, and
<cond> compares expressions with = <> != < > <= >= joined by AND / OR / NOT and parentheses.

Semantics as AWS documents them: a missing field is `Undefined` (a JSON null is `Null`); a
comparison or a logical operator with an `Undefined` (or non-Boolean) operand is `Undefined`; the
WHERE clause is evaluated first, on the incoming payload (it cannot see SELECT's aliases), and
the actions run only when it is `true`; a SELECT item that is `Undefined` is left out of the
result; only `*` may select from a payload that is not JSON.

AWS does not document which wins when `SELECT *` meets a payload key named like one of its
aliases, so a rule that does that is refused at load time unless its WHERE clause refuses such
payloads (`isUndefined(<alias>)` for every alias, ANDed at the top level).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from boxwatch_infra.aws.template import Template


class UnsupportedSql(ValueError):
    pass


class _Undefined:
    """IoT SQL's `Undefined`: not a value (a missing field, a function given the wrong type)."""

    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "Undefined"

    def __bool__(self) -> bool:
        return False


UNDEFINED = _Undefined()


@dataclass(frozen=True)
class MessageContext:
    topic: str
    payload: Any  # parsed JSON (dict) or raw bytes
    client_id: str
    now_ms: int
    principal: str = ""


Expr = Callable[[MessageContext], Any]


# ---------------------------------------------------------------------------------------------- tokens
_TOKEN = re.compile(r"""
    \s*(?:
      (?P<str>'(?:[^']|'')*')
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<op><>|!=|<=|>=|=|<|>)
    | (?P<punct>[(),*])
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    )""", re.X)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos, text = [], 0, text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise UnsupportedSql(f"unsupported IoT SQL near {text[pos:pos + 30]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


# ---------------------------------------------------------------------------------------------- values
def _path(path: list[str]) -> Expr:
    def get(c: MessageContext) -> Any:
        cur = c.payload
        for p in path:
            if not isinstance(cur, dict) or p not in cur:
                return UNDEFINED
            cur = cur[p]
        return cur

    return get


def _boolean(value: Any) -> bool | _Undefined:
    """AND/OR/NOT take Booleans or the strings "true"/"false" (any case); anything else is Undefined."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return UNDEFINED


def _compare(op: str, a: Any, b: Any) -> bool | _Undefined:
    if a is UNDEFINED or b is UNDEFINED:
        return UNDEFINED
    if op == "=":
        return bool(a == b)
    if op in ("<>", "!="):
        return bool(a != b)
    numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (a, b))
    strings = all(isinstance(x, str) for x in (a, b))
    if not (numbers or strings):
        return UNDEFINED
    return bool({"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op])


# ---------------------------------------------------------------------------------------------- parser
def _logical(terms: list[Expr], fold: Callable[[list[Any]], bool]) -> Expr:
    """AND (fold=all) / OR (fold=any) of Boolean terms: Undefined when any term is."""

    def combined(c: MessageContext) -> Any:
        values = [_boolean(t(c)) for t in terms]
        if any(v is UNDEFINED for v in values):
            return UNDEFINED
        return fold(values)

    return combined


class _Parser:
    """Recursive descent over the tokens of one expression: OR < AND < NOT < comparison < primary."""

    FUNCTIONS = frozenset({"topic", "timestamp", "clientid", "principal", "isundefined", "isnull"})

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.conjuncts: list[tuple[str, str]] = []  # (function, argument path) of top-level AND terms

    def peek(self, k: int = 0) -> tuple[str, str] | None:
        return self.toks[self.i + k] if self.i + k < len(self.toks) else None

    def take(self, kind: str | None = None, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (kind and tok[0] != kind) or (value and tok[1].upper() != value.upper()):
            raise UnsupportedSql(f"unsupported IoT SQL: expected {value or kind} in {self.text!r}")
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "name" and tok[1].upper() == word

    def parse(self) -> Expr:
        expr = self.or_expr(top=True)
        if self.peek() is not None:
            raise UnsupportedSql(f"unsupported IoT SQL: unexpected {self.peek()[1]!r} in {self.text!r}")  # type: ignore[index]
        return expr

    def or_expr(self, top: bool = False) -> Expr:
        terms = [self.and_expr(top)]
        while self.keyword("OR"):
            self.i += 1
            terms.append(self.and_expr())
        if len(terms) == 1:
            return terms[0]
        if top:
            self.conjuncts.clear()  # an OR at the top: no term is required on its own

        return _logical(terms, any)

    def and_expr(self, top: bool = False) -> Expr:
        terms = [self.not_expr(top)]
        while self.keyword("AND"):
            self.i += 1
            terms.append(self.not_expr(top))
        if len(terms) == 1:
            return terms[0]

        return _logical(terms, all)

    def not_expr(self, top: bool = False) -> Expr:
        if self.keyword("NOT"):
            self.i += 1
            inner = self.not_expr()

            def negated(c: MessageContext) -> Any:
                v = _boolean(inner(c))
                return UNDEFINED if v is UNDEFINED else not v

            return negated
        start = self.i
        expr = self.comparison()
        if top:
            used = self.toks[start:self.i]
            if (len(used) == 4 and used[0][0] == "name" and used[1] == ("punct", "(") and used[2][0] == "name"
                    and used[3] == ("punct", ")")):
                self.conjuncts.append((used[0][1].lower(), used[2][1]))
        return expr

    def comparison(self) -> Expr:
        left = self.primary()
        tok = self.peek()
        if tok is None or tok[0] != "op":
            return left
        op = self.take("op")[1]
        right = self.primary()
        return lambda c: _compare(op, left(c), right(c))

    def primary(self) -> Expr:
        tok = self.peek()
        if tok is None:
            raise UnsupportedSql(f"unsupported IoT SQL: expression expected in {self.text!r}")
        kind, value = tok
        if (kind, value) == ("punct", "("):
            self.i += 1
            inner = self.or_expr()
            self.take("punct", ")")
            return inner
        if kind == "str":
            self.i += 1
            lit = value[1:-1].replace("''", "'")
            return lambda c: lit
        if kind == "num":
            self.i += 1
            num = float(value) if "." in value else int(value)
            return lambda c: num
        if kind != "name":
            raise UnsupportedSql(f"unsupported IoT SQL: {value!r} in {self.text!r}")
        self.i += 1
        nxt = self.peek()
        if nxt == ("punct", "("):
            return self.call(value)
        upper = value.upper()
        if upper in ("TRUE", "FALSE"):
            b = upper == "TRUE"
            return lambda c: b
        if upper == "NULL":
            return lambda c: None
        if upper in ("AND", "OR", "NOT", "AS", "SELECT", "FROM", "WHERE", "CASE", "IN", "LIKE", "BETWEEN", "IS"):
            raise UnsupportedSql(f"unsupported IoT SQL: {value!r} in {self.text!r}")
        return _path(value.split("."))

    def call(self, name: str) -> Expr:
        fn = name.lower()
        if fn not in self.FUNCTIONS:
            raise UnsupportedSql(f"unsupported IoT SQL function: {name}() in {self.text!r}")
        self.take("punct", "(")
        args: list[Expr] = []
        raw: list[tuple[str, str]] = []
        while self.peek() != ("punct", ")"):
            if args:
                self.take("punct", ",")
            raw.append(self.peek() or ("", ""))
            args.append(self.or_expr())
        self.take("punct", ")")
        if fn == "topic":
            if not args:
                return lambda c: c.topic
            if len(raw) != 1 or raw[0][0] != "num" or "." in raw[0][1]:
                raise UnsupportedSql(f"topic(n) takes one whole number in {self.text!r}")
            n = int(raw[0][1])
            return lambda c: c.topic.split("/")[n - 1] if 1 <= n <= len(c.topic.split("/")) else UNDEFINED
        if fn in ("timestamp", "clientid", "principal"):
            if args:
                raise UnsupportedSql(f"{name}() takes no argument in {self.text!r}")
            return {"timestamp": lambda c: c.now_ms, "clientid": lambda c: c.client_id,
                    "principal": lambda c: c.principal}[fn]
        if len(args) != 1:
            raise UnsupportedSql(f"{name}() takes one argument in {self.text!r}")
        arg = args[0]
        if fn == "isundefined":
            return lambda c: arg(c) is UNDEFINED
        return lambda c: arg(c) is None  # isNull: JSON null only; Undefined is not Null


def _expr(text: str) -> Expr:
    return _Parser(text).parse()


def _where(text: str) -> tuple[Callable[[MessageContext], bool], set[str]]:
    """The condition (true only when it evaluates to the Boolean true) and the payload keys it
    requires to be absent (`isUndefined(key)` terms ANDed at the top level)."""
    parser = _Parser(text)
    expr = parser.parse()
    absent = {arg for fn, arg in parser.conjuncts if fn == "isundefined"}
    return (lambda c: expr(c) is True), absent


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
    fields: set[str] = field(default_factory=set)  # names of items selected from the payload (paths)
    refused_keys: set[str] = field(default_factory=set)  # payload keys the WHERE clause requires absent

    @classmethod
    def parse(cls, name: str, function: str, sql: str) -> Rule:
        m = re.match(r"^\s*SELECT\s+(.+?)\s+FROM\s+'([^']+)'(?:\s+WHERE\s+(.+?))?\s*$", sql, re.I | re.S)
        if not m:
            raise UnsupportedSql(f"rule {name}: cannot parse {sql!r}")
        star, items, fields, aliases = False, [], set(), []
        for item in _split_top(m.group(1)):
            if item == "*":
                star = True
                continue
            am = re.match(r"^(.+?)\s+AS\s+([A-Za-z_][A-Za-z0-9_]*)$", item, re.I | re.S)
            if am:
                items.append((am.group(2), _expr(am.group(1))))
                aliases.append(am.group(2))
                if _PATH.match(am.group(1).strip()):
                    fields.add(am.group(2))
            elif _PATH.match(item):
                items.append((item.split(".")[-1], _expr(item)))
                fields.add(item.split(".")[-1])
            else:
                raise UnsupportedSql(f"rule {name}: select item needs AS: {item!r}")
        names = [n for n, _ in items]
        if len(set(names)) != len(names):
            raise UnsupportedSql(f"rule {name}: two select items have the same name in {sql!r}")
        where, refused = _where(m.group(3)) if m.group(3) else (None, set())
        unguarded = [a for a in aliases if a not in refused] if star else []
        if unguarded:
            # AWS does not say whether `*` or the alias wins: the payload must not be able to choose
            raise UnsupportedSql(f"rule {name}: SELECT * with alias(es) {unguarded} lets a payload carrying them "
                                 f"override them; add WHERE isUndefined(<alias>) AND ... or name the fields")
        return cls(name, function, sql, m.group(2), star, items, where, fields=fields, refused_keys=refused)

    def apply(self, ctx: MessageContext) -> dict[str, Any] | None:
        """The event the rule would deliver to its action, or None when it does not match."""
        if not topic_matches(self.topic_filter, ctx.topic):
            return None
        if self.where is not None and not self.where(ctx):
            return None
        if not isinstance(ctx.payload, dict) and (self.star or self.fields):
            # `*` of bytes is not an object a Lambda action can take; fields of bytes do not exist
            raise ValueError("payload is not a JSON object")
        out: dict[str, Any] = {}
        if self.star:
            out.update(ctx.payload)
        for name, expr in self.items:
            value = expr(ctx)
            if value is not UNDEFINED:
                out[name] = value
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
