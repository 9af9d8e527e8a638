"""`python -m boxwatch_infra.device.fleet_bench --boxes 2000 --duration 60`: can one process on
this machine carry the fleet? Prints the fleet's CPU seconds, peak RSS and the MQTT traffic."""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import tempfile
import time
from pathlib import Path

from boxwatch_infra.device.fleet import BoxRow, Fleet
from boxwatch_infra.mqtt_broker import LocalBroker


def district(n: int, seed: int = 7) -> list[BoxRow]:
    """n boxes scattered over ~6 x 6 km of Haidian, Beijing."""
    rnd = random.Random(seed)
    return [BoxRow(f"BX-{i:05d}", f"box {i}", 39.95 + rnd.random() * 0.054, 116.28 + rnd.random() * 0.07)
            for i in range(n)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--boxes", type=int, default=2000)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--alarms-per-s", type=float, default=5.0, help="faults injected per second")
    args = ap.parse_args()
    rows = district(args.boxes)
    with LocalBroker() as broker, tempfile.TemporaryDirectory() as state:
        cpu0 = time.process_time()
        t0 = time.monotonic()
        fleet = Fleet(rows, "127.0.0.1", broker.port, Path(state), keepalive=30).start()
        connected = fleet.wait_connected(120)
        t_conn = time.monotonic() - t0
        rnd = random.Random(1)
        end = time.monotonic() + args.duration
        raised = 0
        while time.monotonic() < end:
            for _ in range(max(1, math.floor(args.alarms_per_s))):
                fleet.raise_cause(rnd.choice(rows).id, rnd.choice(["overtemp", "residual_current"]), hold_s=20)
                raised += 1
            time.sleep(1.0)
        stats = fleet.stats()
        fleet.stop()
        out = {
            "boxes": args.boxes, "duration_s": args.duration, "all_connected": connected,
            "connect_s": round(t_conn, 1), "cpu_s": round(time.process_time() - cpu0, 1),
            "cpu_share_of_one_core": round((time.process_time() - cpu0) / (time.monotonic() - t0), 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "faults_injected": raised, "alarms_published": stats["alarms_raised"],
            "outbox_pending_at_end": stats["outbox_pending"],
        }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
