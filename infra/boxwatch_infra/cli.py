"""The `boxwatch` console command.

Each command group lives in its own module exposing `register(subparsers)`; the module is imported
only when listed here, and heavy imports stay inside the command functions so `boxwatch --help`
stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = [
    "boxwatch_infra.commands.replay_cmd",
    "boxwatch_infra.commands.invoke_cmd",
    "boxwatch_infra.commands.boxes_cmd",
    "boxwatch_infra.commands.dlq_cmd",
    "boxwatch_infra.commands.sms_cmd",
    "boxwatch_infra.device.cli",
    "boxwatch_infra.localcloud.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="boxwatch", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rc = args.func(args)
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
