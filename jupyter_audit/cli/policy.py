"""`jupyter audit policy check`: what the server's policy would decide for a SQL string, a
shell command or an HTTP request, with the rules of a config file.

Config: `--config FILE` (.py or .json), else the files a Jupyter server reads
(`jupyter_server_config.{json,py}` and `jupyter_server_config.d/*.json` along
`jupyter --paths`' config path, lowest priority first). Whether review is possible mirrors
the server: yes when that config names an identity provider other than jupyter_server's
token/password login (or the environment is a JupyterHub single-user server's) and does not
empty `c.AuditApp.reviewer_groups`; `--review-possible` / `--no-review-possible` override.
Exit 0 with the decision printed (whatever it is), 2 on a usage or config error.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from .main import EXIT_OK, CLIError

CONFIG_NAME = "jupyter_server_config"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "policy",
        help="what the risk policy decides for a statement, command or request",
        description="Print the decision (allow, warn, review, deny) and the rules behind it.",
    )
    psub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = psub.add_parser("check", help="check one operation against the policy")
    what = c.add_mutually_exclusive_group(required=True)
    what.add_argument("--sql", metavar="TEXT", help="SQL (one or more statements)")
    what.add_argument("--shell", metavar="CMD", help="a shell command line")
    what.add_argument("--http", nargs=2, metavar=("METHOD", "URL"), help="an HTTP request")
    c.add_argument("--database", metavar="DSN", help="database or DSN the SQL runs against")
    c.add_argument("--groups", metavar="G,…", default="", help="the requester's groups")
    c.add_argument("--config", metavar="FILE", help="config file with c.Policy.rules")
    c.add_argument(
        "--review-possible",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="whether a reviewer can decide (default: as the config's server would)",
    )
    c.add_argument("--json", action="store_true", help='print {"decision": …, "reasons": […]}')
    c.set_defaults(func=cmd_policy)


def load_config(path: str | None):
    from jupyter_core.paths import jupyter_config_path
    from traitlets.config import Config
    from traitlets.config.loader import ConfigFileNotFound, JSONFileConfigLoader, PyFileConfigLoader

    def load(file: Path) -> Config:
        loader = JSONFileConfigLoader if file.suffix == ".json" else PyFileConfigLoader
        try:
            return loader(file.name, path=str(file.parent)).load_config()
        except ConfigFileNotFound:
            raise CLIError(f"--config {file}: no such file") from None
        except Exception as e:  # noqa: BLE001 - a config file's own error, in one line
            raise CLIError(f"cannot load config {file}: {type(e).__name__}: {e}") from None

    if path:
        return load(Path(path))
    config = Config()
    for folder in reversed(jupyter_config_path()):
        d = Path(folder)
        files = sorted((d / f"{CONFIG_NAME}.d").glob("*.json"))
        files += [d / f"{CONFIG_NAME}.json", d / f"{CONFIG_NAME}.py"]
        for file in files:
            if file.is_file():
                config.merge(load(file))
    return config


# jupyter_server's own logins: one person holds every role (as identity/resolve.py decides)
BUILTIN_LOGINS = ("IdentityProvider", "PasswordIdentityProvider")


def review_possible_in(config, environ=os.environ) -> bool:
    """As the server decides it: reviewer groups (AuditApp's default names one) and an
    identity provider other than jupyter_server's token/password login; a single-user server
    under JupyterHub (its environment) has the Hub's."""
    audit = config.AuditApp if "AuditApp" in config else {}
    if "reviewer_groups" in audit and not audit["reviewer_groups"]:
        return False
    if environ.get("JUPYTERHUB_API_TOKEN") and environ.get("JUPYTERHUB_SERVICE_PREFIX"):
        return True
    server = config.ServerApp if "ServerApp" in config else {}
    provider = server.get("identity_provider_class")
    if provider is None:
        return False
    name = provider if isinstance(provider, str) else getattr(provider, "__name__", "")
    return name.rsplit(".", 1)[-1] not in BUILTIN_LOGINS


def cmd_policy(args) -> int:
    from traitlets import TraitError

    from ..policy import Policy

    config = load_config(args.config)
    possible = args.review_possible
    if possible is None:
        possible = review_possible_in(config)
    try:
        policy = Policy(config=config, review_possible=possible)
    except TraitError as e:
        raise CLIError(f"policy configuration: {e}") from None
    groups = [g for g in args.groups.split(",") if g]
    if args.sql is not None:
        decision = policy.check_sql(args.sql, groups=groups, database=args.database)
    elif args.shell is not None:
        decision = policy.check_shell(args.shell, groups=groups)
    else:
        decision = policy.check_http(args.http[0], args.http[1], groups=groups)
    if args.json:
        print(json.dumps(decision.to_json(), indent=2))
        return EXIT_OK
    extra = f" ({decision.min_approvals} approvals)" if decision.min_approvals > 1 else ""
    print(f"{decision.action}{extra}")
    for r in decision.reasons:
        print(f"  {r.action:6} {r.rule}: {r.message}")
    if decision.reasons and not possible:
        print("  (review is not possible with this configuration; --review-possible to assume)")
    return EXIT_OK
