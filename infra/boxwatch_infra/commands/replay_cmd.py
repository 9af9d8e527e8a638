"""boxwatch replay SCENARIO.yaml [--json]"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("replay", help="run a scenario through the real handlers on in-process moto")
    p.add_argument("scenario", help="scenario YAML (see docs/replay.md)")
    p.add_argument("--json", action="store_true", help="print the JSON report (the default; kept for scripts)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    # stdout carries only the report: everything the handlers print (powertools logs and EMF
    # metrics write to stdout) goes to stderr
    report_out = sys.stdout
    sys.stdout = sys.stderr
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    try:
        from boxwatch_infra.replay import dumps, run_file

        report = run_file(args.scenario)
    finally:
        sys.stdout = report_out
    report_out.write(dumps(report) + "\n")
    return 0
