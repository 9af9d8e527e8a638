"""boxwatch invoke FUNCTION -e EVENT.json: the docker-free `sam local invoke`.

Handler, code and environment come from template.yaml. By default the function runs against an
in-process moto seeded with the boxes and clients of `events/seed.yaml`; with `--aws` it uses
whatever AWS the environment points at (the local cloud via AWS_ENDPOINT_URL, or a real account).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from boxwatch_infra.aws.template import ROOT


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("invoke", help="invoke a template function's handler with an event file")
    p.add_argument("function", help="logical id (AlarmIngestFunction) or short name (AlarmIngest)")
    p.add_argument(
        "-e", "--event", required=True, action="append", help="event JSON file (repeat to send several, in order)"
    )
    p.add_argument("--seed", default=str(ROOT / "events" / "seed.yaml"), help="scenario whose boxes/clients to load")
    p.add_argument("--aws", action="store_true", help="use the AWS the environment points at, not moto")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    events = [json.loads(Path(path).read_text()) for path in args.event]
    out = sys.stdout
    sys.stdout = sys.stderr  # handler logs and metrics go to stderr; stdout carries the result
    try:
        if args.aws:
            from boxwatch_infra.aws.lambda_runtime import LocalFunction
            from boxwatch_infra.aws.template import Template

            template = Template()
            fn = LocalFunction(template, template.function(args.function))
            results = [fn.invoke(event) for event in events]
            pushes: list[dict[str, object]] = []
        else:
            from boxwatch_infra.replay import Replay, Scenario
            from boxwatch_infra.sandbox import Sandbox

            replay = Replay(Scenario.load(args.seed))
            with Sandbox() as sb:
                replay.sb = sb
                replay.setup(sb)
                results = [sb.invoke(args.function, event) for event in events]
                replay.collect()
                pushes = replay.notifications
    finally:
        sys.stdout = out
    print(json.dumps({"results": results, "pushes": pushes}, indent=2, ensure_ascii=False, default=str))
    return 0
