"""`jupyter audit approvals list|approve|deny --url URL --token T`: reviewers (and break-glass
members, with --reason) decide from a terminal, through the REST API of the running server or
of the Hub's collector (the broker lives there; there is no `--db` mode). What the server
sends is shown with control characters escaped, so a statement cannot drive the reviewer's
terminal."""

from __future__ import annotations

import argparse
import json
import os

from .main import EXIT_OK, CLIError, _api
from .terminal import printable

STATES = ("pending", "approved", "denied", "expired", "cancelled", "executed", "all")


def add_parser(sub) -> None:
    p = sub.add_parser("approvals", help="list and decide approval requests (reviewers)")
    asub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = asub.add_parser("list", help="requests: everyone's for reviewers, your own otherwise")
    a.add_argument("--state", choices=STATES, default="pending", help="default: pending")
    for action in ("approve", "deny"):
        a = asub.add_parser(action, help=f"{action} request ID")
        a.add_argument("request_id", type=int, metavar="ID")
        a.add_argument("--reason", help="why (recorded; required for break-glass decisions)")
    for a in asub.choices.values():
        a.add_argument(
            "--url", metavar="URL", required=True, help="base URL of a running Jupyter server"
        )
        a.add_argument(
            "--token",
            metavar="T",
            help="API token (or bearer token); default: $JUPYTER_AUDIT_TOKEN",
        )
        a.add_argument("--json", action="store_true", help="machine-readable output")
        a.set_defaults(func=cmd_approvals, db=None)


def cmd_approvals(args: argparse.Namespace) -> int:
    from .runner import TOKEN_ENV

    args.token = args.token or os.environ.get(TOKEN_ENV)
    if not args.token:
        raise CLIError(f"--url needs --token (or {TOKEN_ENV} in the environment)")
    if args.action == "list":
        result = _api(args, "approvals", {"state": args.state})
        if args.json:
            print(json.dumps(result, indent=2, ensure_ascii=False))
        else:
            for a in result["approvals"]:
                print_row(a)
            if not result["approvals"]:
                print(f"no {'' if args.state == 'all' else args.state + ' '}approval requests")
        return EXIT_OK
    body = {"decision": args.action}
    if args.reason is not None:
        body["reason"] = args.reason
    result = _api(args, f"approvals/{args.request_id}", method="POST", body=body)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        # the caller's decision is the last one; break-glass says so (it is flagged for review)
        mine = (result.get("decisions") or [{}])[-1]
        glass = " (break-glass)" if mine.get("break_glass") else ""
        print(printable(result.get("message")) + glass)
    return EXIT_OK


def print_row(a: dict) -> None:
    rules = ",".join(a.get("rules") or [])
    print(
        f"#{a['id']:<5} {a['state']:<9} {printable(a.get('requester'), 16):16} "
        f"{printable(a.get('requested_at'))}  {printable(a.get('notebook') or '-', 40)}"
    )
    print(f"       {printable(rules)}: {printable(a.get('statement'), 200)}")
    for d in a.get("decisions") or []:
        glass = " (break-glass)" if d.get("break_glass") else ""
        why = f": {printable(d.get('reason'), 200)}" if d.get("reason") else ""
        print(f"       {d['decision']} by {printable(d.get('reviewer'))}{glass}{why}")
