"""`jupyter audit collector`: run the collector, one trail for a whole JupyterHub, as a Hub
service (docs/collector.md). Flags set `c.CollectorApp` traits; `--config FILE` reads a
Python config file first (`c.CollectorApp.pg_dsn = …`)."""

from __future__ import annotations

import argparse

FLAGS = {  # flag -> CollectorApp trait
    "db": "db_path",
    "pg": "pg_dsn",
    "state_dir": "state_dir",
    "ip": "ip",
    "port": "port",
    "silent_after": "silent_after",
    "max_body_bytes": "max_body_bytes",
    "archive_path": "archive_path",
    "pg_maintenance": "pg_maintenance_dsn",
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "collector",
        help="run the collector: one trail for a whole JupyterHub (a Hub-managed service)",
        description="Serve the forwarding API to the Hub's single-user servers, checking each "
        "caller's token with the Hub, into one trail: --db PATH (DuckDB) or --pg DSN "
        "(PostgreSQL). Needs the Hub service environment (JUPYTERHUB_API_TOKEN, "
        "JUPYTERHUB_SERVICE_URL, JUPYTERHUB_SERVICE_PREFIX). See docs/collector.md.",
    )
    p.add_argument("--db", metavar="PATH", help="DuckDB trail file")
    p.add_argument("--pg", metavar="DSN", help="PostgreSQL connection string")
    p.add_argument("--state-dir", metavar="DIR", help="keys and checkpoint copy (0700)")
    p.add_argument("--ip", metavar="ADDR", help="listen address")
    p.add_argument("--port", type=int, metavar="N", help="listen port")
    p.add_argument("--silent-after", type=float, metavar="SECONDS")
    p.add_argument("--max-body-bytes", type=int, metavar="N")
    p.add_argument("--archive-path", metavar="PATH", help="archive directory or s3://bucket/prefix")
    p.add_argument(
        "--pg-maintenance", metavar="DSN", help="the maintenance role's DSN (archived partitions)"
    )
    p.add_argument("--config", metavar="FILE", help="a Python config file (c.CollectorApp…)")
    p.set_defaults(func=cmd_collector)


def cmd_collector(args: argparse.Namespace) -> int:
    from traitlets import TraitError
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    from ..collector.app import CollectorApp, run
    from .main import CLIError

    config = Config()
    if args.config:
        try:
            config = PyFileConfigLoader(args.config).load_config()
        except Exception as e:  # noqa: BLE001 - a missing or broken file: one line
            raise CLIError(f"cannot read {args.config}: {e}") from None
    for flag, trait in FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            config.CollectorApp[trait] = value
    try:
        app = CollectorApp(config=config)
    except TraitError as e:
        raise CLIError(str(e)) from None
    if not (app.db_path or app.pg_dsn):
        raise CLIError("give --db PATH or --pg DSN")
    try:
        run(app)
    except ValueError as e:
        raise CLIError(str(e)) from None
    return 0
