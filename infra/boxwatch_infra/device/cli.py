"""`boxwatch fleet run` and `boxwatch device provision|run`."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from pathlib import Path


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    fleet = sub.add_parser("fleet", help="run many boxes in one process").add_subparsers(dest="fleet_cmd",
                                                                                         required=True)
    run = fleet.add_parser("run", help="connect a fleet of boxes to a broker and inject faults")
    run.add_argument("--boxes", required=True, help="CSV: id,name,address,lat,lng,timezone")
    run.add_argument("--broker", required=True, help="HOST:PORT (plain TCP)")
    run.add_argument("--duration", type=float, default=60.0, help="seconds to run")
    run.add_argument("--keepalive", type=int, default=30)
    run.add_argument("--state-dir", default="var/fleet", help="sequence numbers and outboxes")
    run.add_argument("--fault", action="append", default=[],
                     help="AT:ACTION:ARGS e.g. 5:raise:BX-1:overtemp, 10:cut:39.98,116.31,300, 20:burn:BX-5, "
                          "30:fire:BX-9,3,10 (start,hops,delay)")
    run.add_argument("--script", help="YAML list of {at, action, args} faults")
    run.set_defaults(func=fleet_run)

    device = sub.add_parser("device", help="one box").add_subparsers(dest="device_cmd", required=True)
    prov = device.add_parser("provision", help="create thing, certificate and policy in AWS IoT")
    prov.add_argument("thing")
    prov.add_argument("--out", required=True)
    prov.set_defaults(func=device_provision)
    one = device.add_parser("run", help="run one box against AWS IoT (TLS) or a local broker")
    one.add_argument("--thing", required=True)
    one.add_argument("--endpoint", help="AWS IoT data endpoint (TLS, port 8883)")
    one.add_argument("--cert")
    one.add_argument("--key")
    one.add_argument("--ca")
    one.add_argument("--broker", help="HOST:PORT for a local broker (plain TCP)")
    one.add_argument("--keepalive", type=int, default=30)
    one.add_argument("--state-dir", default="var/device")
    one.add_argument("--duration", type=float, default=0, help="seconds; 0 = until interrupted")
    one.set_defaults(func=device_run)


def fleet_run(args: argparse.Namespace) -> int:
    import yaml

    from boxwatch_infra.device.fleet import Fleet, parse_fault, read_boxes, schedule_fault

    host, port = _host_port(args.broker)
    rows = read_boxes(Path(args.boxes))
    fleet = Fleet(rows, host, port, Path(args.state_dir), keepalive=args.keepalive)
    faults = [parse_fault(f) for f in args.fault]
    if args.script:
        for f in yaml.safe_load(Path(args.script).read_text()) or []:
            faults.append((float(f["at"]), str(f["action"]), [str(a) for a in f.get("args", [])]))
    fleet.start()
    for at, action, fargs in faults:
        schedule_fault(fleet, at, action, fargs)
    deadline = time.monotonic() + args.duration
    try:
        while time.monotonic() < deadline:
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
            print(json.dumps(fleet.stats()), file=sys.stderr)
    except KeyboardInterrupt:
        pass
    fleet.stop()
    print(json.dumps(fleet.stats()))
    return 0


def device_provision(args: argparse.Namespace) -> int:
    import boto3

    from boxwatch_infra.device.provision import provision

    config = provision(args.thing, Path(args.out), boto3.client("iot"), boto3.client("cloudformation"))
    print(json.dumps(config, indent=2))
    print(f"download the CA: curl -o {config['ca']} {config['ca_download']}", file=sys.stderr)
    return 0


def device_run(args: argparse.Namespace) -> int:
    from boxwatch_infra.device.agent import BoxAgent, TlsConfig
    from boxwatch_infra.device.model import DistributionBox

    if args.broker:
        host, port = _host_port(args.broker)
        tls = None
    elif args.endpoint and args.cert and args.key and args.ca:
        host, port, tls = args.endpoint, 8883, TlsConfig(args.ca, args.cert, args.key)
    else:
        print("give --broker HOST:PORT, or --endpoint with --cert --key --ca", file=sys.stderr)
        return 2
    agent = BoxAgent(DistributionBox.standard(args.thing), host, port, Path(args.state_dir),
                     keepalive=args.keepalive, tls=tls,
                     on_alarm=lambda box, alarm: print(json.dumps({"box": box, **alarm}), flush=True)).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with contextlib.suppress(KeyboardInterrupt):
        done.wait(args.duration or None)
    agent.stop()
    return 0
