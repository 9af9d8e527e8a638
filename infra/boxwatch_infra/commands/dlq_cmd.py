"""boxwatch dlq replay: feed dead letters back through the handlers once their cause is fixed.

Works on the AWS the environment points at (a real account, or the local cloud through
AWS_ENDPOINT_URL): queue URLs and function names come from the deployed stack's resources,
falling back to the template's names when the stack cannot be described.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("dlq", help="dead-letter queues: replay what failed, once the cause is fixed")
    dsub = p.add_subparsers(dest="dlq_command", required=True)
    r = dsub.add_parser("replay", help="redeliver dead letters through the template's rules and functions")
    r.add_argument("--queue", choices=["rule", "async", "rejected", "all"], default="all")
    r.add_argument("--dry-run", action="store_true", help="show what would be redelivered; change nothing")
    r.add_argument("--stack", default=None, help="CloudFormation stack name (default: the template's)")
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import boto3
    from botocore.exceptions import ClientError

    from boxwatch_infra.aws.template import Template
    from boxwatch_infra.dlq import QUEUES, lambda_invoker, replay, stack_physical_ids

    template = Template()
    stack = args.stack or template.stack_name
    try:
        physical = stack_physical_ids(boto3.client("cloudformation"), stack)
    except ClientError:
        physical = {}  # not deployed through CloudFormation (local cloud): the template's names
    kinds = list(QUEUES) if args.queue == "all" else [args.queue]
    urls = {k: physical.get(QUEUES[k]) or template.physical_name(QUEUES[k]) for k in kinds}
    report = replay(boto3.client("sqs"), urls, lambda_invoker(boto3.client("lambda"), physical, template),
                    template, kinds, dry_run=args.dry_run, physical=physical)
    json.dump(report.as_dict(), sys.stdout, indent=2, default=str, ensure_ascii=False)
    sys.stdout.write("\n")
    return 1 if report.failed else 0
