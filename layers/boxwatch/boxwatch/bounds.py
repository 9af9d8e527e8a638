"""Strings from outside (a box's shadow report, an alarm payload, a registry name) are bounded and
made printable before they reach a push, a log or a table.

A box controls what it reports: a 2,000-character `reason`, a newline that forges a log line, a
right-to-left override that turns a name around on a phone. `text()` keeps the meaning and drops
the rest: control, format (bidi overrides, zero-width), private-use and unassigned characters and
line breaks become spaces, runs of white space collapse, and a string longer than its limit ends
in an ellipsis. The limits are in characters; `cut_utf8()` bounds bytes (a push is counted in
bytes).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

ELLIPSIS = "…"
_DROPPED = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

REASON_CHARS = 200  # a box's reason for refusing or failing a command
NAME_CHARS = 200  # a box's name (BoxSpec allows 200)
TEXT_CHARS = 500  # any other string that fills a push (an address: BoxSpec allows 500)
FIELD_CHARS = 64  # a short field of a report (status words, ids)


def text(value: Any, limit: int) -> str:
    """`value` as printable text of at most `limit` characters."""
    raw = value if isinstance(value, str) else str(value)
    raw = raw[: limit * 4 + 16]  # bound the work: whatever follows is cut anyway
    cleaned = "".join(" " if unicodedata.category(ch) in _DROPPED else ch for ch in raw)
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: max(limit - 1, 0)] + ELLIPSIS


def optional_text(value: Any, limit: int) -> str | None:
    """As `text`, with None (or nothing printable) staying None."""
    if value is None:
        return None
    return text(value, limit) or None


def cut_utf8(value: str, max_bytes: int) -> str:
    """The longest prefix of `value` whose UTF-8 form, with an ellipsis, fits `max_bytes`."""
    if len(value.encode()) <= max_bytes:
        return value
    room = max_bytes - len(ELLIPSIS.encode())
    if room <= 0:
        return ""
    return value.encode()[:room].decode(errors="ignore") + ELLIPSIS


def fields(report: Mapping[str, Any], keys: Iterable[str], limit: int = FIELD_CHARS) -> dict[str, Any]:
    """The named fields of a report, nothing else: strings bounded, numbers and booleans as they
    are, anything nested dropped (a report is not a place to store a document)."""
    out: dict[str, Any] = {}
    for key in keys:
        value = report.get(key)
        if isinstance(value, str):
            out[key] = text(value, limit)
        elif isinstance(value, bool | int | float) and value == value:  # NaN is not a value
            out[key] = value
    return out


def strings_in(value: Any, limit: int) -> Any:
    """Every string inside a JSON-like value bounded (keys too); the structure is kept."""
    if isinstance(value, str):
        return text(value, limit)
    if isinstance(value, Mapping):
        return {text(k, FIELD_CHARS): strings_in(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strings_in(v, limit) for v in value]
    return value
