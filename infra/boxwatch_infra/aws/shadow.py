"""The MQTT side of the AWS IoT device shadow, for local runs.

moto keeps shadow state with AWS's version, merge and delta rules but publishes nothing. AWS IoT,
after every accepted update, publishes `.../update/accepted`, `.../update/delta` (when desired and
reported differ) and `.../update/documents` (previous and current state). These helpers build
those messages from the shadow before and after an update, so that rules on the documents topic
(CommandAck) and boxes on the delta topic see what they would on AWS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SHADOW_PREFIX = "$aws/things/{thing}/shadow"


def topic(thing: str, suffix: str) -> str:
    return f"{SHADOW_PREFIX.format(thing=thing)}/{suffix}"


def delta(desired: dict[str, Any] | None, reported: dict[str, Any] | None) -> dict[str, Any]:
    """AWS delta: desired keys whose value differs from reported (recursively for objects)."""
    out: dict[str, Any] = {}
    reported = reported or {}
    for key, want in (desired or {}).items():
        have = reported.get(key)
        if want == have:
            continue
        if isinstance(want, dict) and isinstance(have, dict):
            sub = delta(want, have)
            if sub:
                out[key] = sub
        else:
            out[key] = want
    return out


def _state_doc(doc: dict[str, Any] | None) -> dict[str, Any]:
    if not doc:
        return {"state": {}, "metadata": {}, "version": 0}
    state = {k: v for k, v in doc.get("state", {}).items() if k in ("desired", "reported")}
    return {"state": state, "metadata": doc.get("metadata", {}), "version": doc.get("version", 0)}


@dataclass(frozen=True)
class ShadowUpdate:
    thing: str
    previous: dict[str, Any] | None  # shadow document before the update (None: no shadow yet)
    current: dict[str, Any]  # after
    timestamp_s: int

    def messages(self) -> list[tuple[str, dict[str, Any]]]:
        """(topic, payload) that AWS IoT publishes for this accepted update, in its order."""
        state = self.current.get("state", {})
        out: list[tuple[str, dict[str, Any]]] = []
        d = delta(state.get("desired"), state.get("reported"))
        if d:
            out.append((topic(self.thing, "update/delta"),
                        {"version": self.current.get("version"), "timestamp": self.timestamp_s, "state": d}))
        out.append((topic(self.thing, "update/documents"),
                    {"previous": _state_doc(self.previous), "current": _state_doc(self.current),
                     "timestamp": self.timestamp_s}))
        return out
