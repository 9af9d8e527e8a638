"""Operator commands on a deployed stack: boxes import/register, clients bind/invite.

Table names come from the stack's outputs (CloudFormation, `boxwatch_infra.deployed`), so the
same commands work on AWS and on the local cloud (set AWS_ENDPOINT_URL).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys

from boxwatch_infra.deployed import stack_outputs, stack_settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    boxes = sub.add_parser("boxes", help="box registry").add_subparsers(dest="boxes_cmd", required=True)
    imp = boxes.add_parser("import", help="bulk-load boxes from CSV: id,name,address,lat,lng[,timezone]")
    imp.add_argument("csv")
    imp.add_argument("--stack", default="boxwatch")
    imp.set_defaults(func=import_csv)
    reg = boxes.add_parser("register", help="register or move one box")
    for name in ("id", "name", "lat", "lng"):
        reg.add_argument(f"--{name}", required=True)
    reg.add_argument("--address", default="")
    reg.add_argument("--timezone", default="Asia/Shanghai")
    reg.add_argument("--stack", default="boxwatch")
    reg.set_defaults(func=register_one)
    rei = boxes.add_parser("reindex", help="move boxes indexed by an older version to the cells lookups query")
    rei.add_argument("--stack", default="boxwatch")
    rei.set_defaults(func=reindex)

    clients = sub.add_parser("clients", help="client bindings").add_subparsers(dest="clients_cmd", required=True)
    b = clients.add_parser("bind", help="bind a client to a box")
    b.add_argument("client_id")
    b.add_argument("box_id")
    b.add_argument("--target", required=True, help="SNS endpoint/topic ARN or +E.164 phone number")
    b.add_argument("--kind", default="endpoint", choices=["endpoint", "topic", "sms"])
    b.add_argument("--locale", default="zh-CN", choices=["zh-CN", "en"])
    b.add_argument("--role", choices=["user", "manager"], default=None,
                   help="manager: an escalation contact of the box (SMS when an alarm stays unacknowledged)")
    b.add_argument("--sms", default=None, help="the manager's E.164 number for escalation SMS")
    b.add_argument("--stack", default="boxwatch")
    b.set_defaults(func=bind_client)
    inv = clients.add_parser("invite", help="create a client's account (no self sign-up); prints its client id")
    who = inv.add_mutually_exclusive_group(required=True)
    who.add_argument("--phone", help="E.164 number (+8613800138000): the invitation comes by SMS")
    who.add_argument("--email", help="the invitation comes by e-mail")
    inv.add_argument("--resend", action="store_true", help="send the invitation of an existing account again")
    inv.add_argument("--stack", default="boxwatch")
    inv.set_defaults(func=invite_client)


def import_csv(args: argparse.Namespace) -> int:
    from pydantic import ValidationError
    from tqdm import tqdm

    from boxwatch.registry import BoxSpec, import_boxes

    settings = stack_settings(args.stack)
    with open(args.csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    specs, bad = [], 0
    for line, row in enumerate(rows, start=2):
        try:
            specs.append(BoxSpec.model_validate(row))
        except ValidationError as exc:
            bad += 1
            print(f"{args.csv}:{line}: skipped: {exc.errors()[0]['loc']} {exc.errors()[0]['msg']}", file=sys.stderr)
    for _ in tqdm(import_boxes(specs, settings), total=len(specs), unit="box", desc="importing"):
        pass
    print(f"imported {len(specs)} boxes, skipped {bad} bad rows", file=sys.stderr)
    return 1 if bad else 0


def register_one(args: argparse.Namespace) -> int:
    from boxwatch.registry import BoxSpec, register_box

    settings = stack_settings(args.stack)
    item = register_box(BoxSpec(id=args.id, name=args.name, address=args.address, lat=args.lat, lng=args.lng,
                                timezone=args.timezone), settings)
    print(f"{item.box_id}: alarm cell {item.alarm_cell}, area cell {item.area_cell}")
    return 0


def reindex(args: argparse.Namespace) -> int:
    from boxwatch.registry import reindex_boxes

    moved = reindex_boxes(stack_settings(args.stack))
    print(f"reindexed {moved} boxes", file=sys.stderr)
    return 0


def bind_client(args: argparse.Namespace) -> int:
    from boxwatch.errors import UnknownBox
    from boxwatch.registry import BindingSpec, bind

    stack_settings(args.stack)
    try:
        bind(BindingSpec(client_id=args.client_id, box_id=args.box_id, target=args.target,
                         target_kind=args.kind, locale=args.locale, role=args.role, sms=args.sms))
    except UnknownBox as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def invite_client(args: argparse.Namespace) -> int:
    """AdminCreateUser in the stack's ClientUserPool (the pool allows nothing else): the invitation
    carries a temporary password; the account's `sub` is the client id that bindings name."""
    import boto3
    from botocore.exceptions import ClientError

    if args.phone is not None and not PHONE.match(args.phone):
        print("error: --phone is an E.164 number, e.g. +8613800138000", file=sys.stderr)
        return 2
    if args.email is not None and not EMAIL.match(args.email):
        print("error: --email is not an e-mail address", file=sys.stderr)
        return 2
    pool = stack_outputs(args.stack)["ClientUserPoolId"]
    # the operator vouches for the number or address; the temporary password sent there proves it
    if args.phone is not None:
        username, medium = args.phone, "SMS"
        attributes = [{"Name": "phone_number", "Value": args.phone}, {"Name": "phone_number_verified", "Value": "true"}]
    else:
        username, medium = args.email, "EMAIL"
        attributes = [{"Name": "email", "Value": args.email}, {"Name": "email_verified", "Value": "true"}]
    extra = {"MessageAction": "RESEND"} if args.resend else {}
    try:
        user = boto3.client("cognito-idp").admin_create_user(
            UserPoolId=pool, Username=username, UserAttributes=attributes, DesiredDeliveryMediums=[medium],
            **extra)["User"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "UsernameExistsException":
            print(f"error: {username} already has an account (--resend sends its invitation again)", file=sys.stderr)
            return 2
        raise
    attrs = {a["Name"]: a["Value"] for a in user.get("Attributes", [])}
    print(json.dumps({"client_id": attrs.get("sub"), "username": user.get("Username"), "status": user.get("UserStatus"),
                      "invited_by": medium.lower()}))
    print(f"bind it: boxwatch clients bind {attrs.get('sub')} <box id> --target ... --stack {args.stack}",
          file=sys.stderr)
    return 0
