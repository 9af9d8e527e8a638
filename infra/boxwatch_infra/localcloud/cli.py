"""`boxwatch local up [--keep]` and `boxwatch demo [--keep] [--screenshot PNG]` (docs/local-cloud.md)."""

from __future__ import annotations

import argparse
import json
import sys
import time


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    local = sub.add_parser("local", help="the local cloud: the whole system on 127.0.0.1 from template.yaml")
    lsub = local.add_subparsers(dest="local_cmd", required=True)
    up = lsub.add_parser("up", help="bring the local cloud up and print how to reach it")
    up.add_argument("--keep", action="store_true", help="stay up until Ctrl-C (default: stop after --duration)")
    up.add_argument("--duration", type=float, default=600.0, help="seconds to stay up without --keep (600)")
    for name in ("mqtt", "moto", "iot-data", "api", "console"):
        up.add_argument(f"--{name}-port", type=int, default=0, help=f"{name} port (default: a free one)")
    up.add_argument("--schedule-scale", type=float, default=1.0, help="run schedules N times faster")
    up.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="template parameter")
    up.add_argument("--state-dir", default="", help="logs and unpacked code (default: a temp dir)")
    up.set_defaults(func=local_up)

    demo = sub.add_parser("demo", help="a scripted day on the local cloud with a fleet of device agents")
    demo.add_argument("--keep", action="store_true", help="leave the stack and the fleet up afterwards (Ctrl-C)")
    demo.add_argument("--boxes", type=int, default=300, help="fleet size (200..2000, default 300)")
    demo.add_argument("--screenshot", default="", metavar="PNG",
                      help="save the operator console during the fire (e.g. docs/console.png)")
    demo.set_defaults(func=run_demo)


def local_up(args: argparse.Namespace) -> int:
    import logging

    from boxwatch_infra.localcloud.cloud import LocalCloud, LocalCloudConfig
    from boxwatch_infra.localcloud.phones import Push, format_push

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    params = dict(p.split("=", 1) for p in args.param)
    cfg = LocalCloudConfig(moto_port=args.moto_port, mqtt_port=args.mqtt_port, iot_data_port=args.iot_data_port,
                           api_port=args.api_port, console_port=args.console_port, parameter_overrides=params,
                           schedule_scale=args.schedule_scale, state_dir=args.state_dir)
    cloud = LocalCloud(cfg)
    out = sys.stdout
    cloud.start()
    try:
        out = cloud.console_stream
        info = cloud.info()
        out.write(describe(info) + "\n")
        out.flush()

        def show(p: Push) -> None:
            out.write(format_push(p) + "\n")
            out.flush()

        cloud.phones.on_push.append(show)
        deadline = None if args.keep else time.monotonic() + args.duration
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        cloud.stop()
        out.write("local cloud stopped\n")
    return 0


def describe(info: dict[str, object]) -> str:
    i: dict[str, object] = info
    mqtt = i["mqtt"]
    assert isinstance(mqtt, dict)
    apis = i["apis"]
    assert isinstance(apis, dict)
    lines = [
        f"local cloud up: stack {i['stack']!r} (CloudFormation in moto, {i['stack_created_in_s']} s)",
        f"  AWS APIs (moto_server)   {i['moto']}",
        f"  MQTT (IoT Core)          127.0.0.1:{mqtt['port']}",
        f"  iot-data (shadows)       {i['iot_data']}",
        *[f"  HTTP API {k:<15} {v}   (Authorization: Bearer local:<client id>)" for k, v in apis.items()],
        f"  phones / console         {i['console']}/inbox",
        f"  operator console         {i.get('ops_console', '')}   (sign in as <name>@<org>, e.g. ann@default)",
        "",
        f"  export AWS_ENDPOINT_URL={i['moto']} AWS_ENDPOINT_URL_IOT_DATA_PLANE={i['iot_data']} "
        "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1",
        f"  aws --endpoint-url {i['moto']} cloudformation describe-stack-resources --stack-name {i['stack']}",
        f"  mosquitto_sub -h 127.0.0.1 -p {mqtt['port']} -t 'boxwatch/#' -t '$aws/#' -v",
        "",
        "rules:     " + json.dumps(i["rules"]),
        "schedules: " + json.dumps(i["schedules"]),
    ]
    return "\n".join(lines)


def run_demo(args: argparse.Namespace) -> int:
    from boxwatch_infra.localcloud.demo import main

    return main(boxes=max(200, min(args.boxes, 2000)), keep=args.keep, screenshot=args.screenshot)
