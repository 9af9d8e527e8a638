"""Make a failing scenario minimal: remove faults, events, clients and boxes (with what names
them) for as long as the scenario still shows the same class of disagreement."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import yaml

Predicate = Callable[[dict[str, Any]], bool]


def _without_events(s: dict[str, Any], drop: set[int]) -> dict[str, Any]:
    return {**s, "events": [e for i, e in enumerate(s["events"]) if i not in drop]}


def _without_box(s: dict[str, Any], box: str) -> dict[str, Any]:
    out = copy.deepcopy(s)
    out["boxes"] = [b for b in out["boxes"] if b["id"] != box]
    out["events"] = [e for e in out["events"] if e.get("box") != box]
    clients = []
    for c in out.get("clients", []):
        c["boxes"] = [b for b in c["boxes"] if b != box]
        if c["boxes"]:
            clients.append(c)
    out["clients"] = clients
    keep = {c["id"] for c in clients}
    out["events"] = [e for e in out["events"] if e.get("type") != "power_off" or e.get("client") in keep]
    return out


def _without_client(s: dict[str, Any], client: str) -> dict[str, Any]:
    out = {**s, "clients": [c for c in s.get("clients", []) if c["id"] != client]}
    return {**out, "events": [e for e in s["events"] if e.get("client") != client]}


def shrink(scenario: dict[str, Any], fails: Predicate, budget: int = 400) -> dict[str, Any]:
    """Greedy delta debugging: chunks of events first, then single ones, then faults, clients, boxes."""
    best = copy.deepcopy(scenario)
    tries = 0

    def attempt(candidate: dict[str, Any]) -> bool:
        nonlocal best, tries
        if tries >= budget:
            return False
        tries += 1
        if fails(candidate):
            best = candidate
            return True
        return False

    changed = True
    while changed and tries < budget:
        changed = False
        if best.get("faults"):
            for i in range(len(best["faults"]) - 1, -1, -1):
                faults = [f for j, f in enumerate(best["faults"]) if j != i]
                cand = {**best, "faults": faults} if faults else {k: v for k, v in best.items() if k != "faults"}
                changed |= attempt(cand)
        n = len(best["events"])
        chunk = max(1, n // 2)
        while chunk >= 1 and tries < budget:
            i = 0
            while i < len(best["events"]) and tries < budget:
                drop = set(range(i, min(i + chunk, len(best["events"]))))
                if attempt(_without_events(best, drop)):
                    changed = True
                else:
                    i += chunk
            chunk //= 2
        for box in [b["id"] for b in best["boxes"]][::-1]:
            changed |= attempt(_without_box(best, box))
        for client in [c["id"] for c in best.get("clients", [])][::-1]:
            changed |= attempt(_without_client(best, client))
    return best


def to_yaml(scenario: dict[str, Any], comment: str = "") -> str:
    """A scenario as replay YAML: one flow mapping per box, client, event and fault."""
    lines = [f"# {line}" for line in comment.splitlines()] if comment else []
    if scenario.get("settings"):
        lines.append("settings: " + yaml.safe_dump(scenario["settings"], default_flow_style=True, width=1000,
                                                   sort_keys=False).strip())
    for section in ("boxes", "clients", "events", "faults"):
        items = scenario.get(section)
        if not items:
            continue
        lines.append(f"{section}:")
        lines += ["  - " + yaml.safe_dump(item, default_flow_style=True, width=1000, sort_keys=False).strip()
                  for item in items]
    return "\n".join(lines) + "\n"
