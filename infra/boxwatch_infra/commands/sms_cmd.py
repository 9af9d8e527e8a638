"""`boxwatch sms spend-limit`: the account's SMS spend limit, set from the deployed stack.

Run after every deploy (with the deploy's credentials). SNS SetSMSAttributes has no resource-level
permission (its IAM Resource is "*", account-wide), so no function of the stack is given it: a
custom resource would hand a Lambda role an account setting. `--check` only reads the account's
limit and exits 1 when it is missing or above the stack's `SmsMonthlySpendLimitUsd`: a CI gate.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sms = sub.add_parser("sms", help="SMS safeguards of the account").add_subparsers(dest="sms_cmd", required=True)
    lim = sms.add_parser("spend-limit", help="set (or --check) the account's monthly SMS spend limit")
    lim.add_argument("--stack", default="boxwatch")
    lim.add_argument("--check", action="store_true", help="change nothing; exit 1 unless the limit is in place")
    lim.set_defaults(func=spend_limit)


def spend_limit(args: argparse.Namespace) -> int:
    import boto3

    from boxwatch_infra.deployed import stack_outputs

    want = float(stack_outputs(args.stack)["SmsMonthlySpendLimitUsd"])
    sns: Any = boto3.client("sns")
    if not args.check:
        sns.set_sms_attributes(attributes={"MonthlySpendLimit": f"{want:g}"})
    got = sns.get_sms_attributes(attributes=["MonthlySpendLimit"]).get("attributes", {}).get("MonthlySpendLimit")
    ok = got is not None and float(got) <= want
    print(json.dumps({"stack_limit_usd": want, "account_limit_usd": None if got is None else float(got), "ok": ok}))
    return 0 if ok else 1
