"""End to end on the local cloud: MQTT publish to SNS publish latency, measured by the local
cloud's own latency script, never by a second implementation here."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from typing import Any

MODULE = "boxwatch_infra.localcloud.latency"


def run(rate: int, duration_s: int, timeout_s: int, boxes: int) -> dict[str, Any]:
    if importlib.util.find_spec("boxwatch_infra.localcloud") is None:
        return {"not_measured": "the local cloud (infra/boxwatch_infra/localcloud) is not installed"}
    if importlib.util.find_spec(MODULE) is None:
        return {"not_measured": f"the local cloud has no latency script ({MODULE}) yet"}
    cmd = [sys.executable, "-m", MODULE, "--rate", str(rate), "--duration", str(duration_s), "--boxes", str(boxes)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"not_measured": f"{' '.join(cmd[1:])} did not finish within {timeout_s} s"}
    # exit 1 means not every alarm was pushed within the run (an overloaded local stack): the
    # report still stands and says how many were
    try:
        doc: dict[str, Any] = json.loads(out.stdout[out.stdout.index("{"):])
    except (ValueError, json.JSONDecodeError):
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"not_measured": f"{' '.join(cmd[1:])} failed (exit {out.returncode}): {tail[0][:200]}"}
    return {"command": " ".join(cmd[1:]), "report": doc}
