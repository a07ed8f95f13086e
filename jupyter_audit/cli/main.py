"""`jupyter audit …` (also `jupyter-audit …`): verify, export, show, token, run, approvals,
mask, policy, replay, archive, demo, collector.

Subcommands that read the trail take `--db PATH` (the server is stopped) or
`--url URL --token T` (a running server, through its REST API); `verify`, `export` and
`show` also `--pg DSN` (a collector's PostgreSQL trail, read while it is written). Exit
codes: 0 success or an intact trail, 1 tampering found, 2 usage or I/O error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

EXIT_OK, EXIT_TAMPERED, EXIT_ERROR = 0, 1, 2


class CLIError(Exception):
    """A usage or I/O problem: printed as one line, exit 2. `status`: the HTTP status of a
    server's refusal (`_api`), else None."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def default_db() -> str:
    from jupyter_core.paths import jupyter_data_dir

    return os.path.join(jupyter_data_dir(), "audit", "trail.duckdb")


def _add_source(p: argparse.ArgumentParser, pg: bool = False) -> None:
    g = p.add_argument_group("trail")
    g.add_argument("--db", metavar="PATH", help="trail file (server stopped); default: %(default)s")
    g.add_argument("--url", metavar="URL", help="base URL of a running Jupyter server")
    g.add_argument("--token", metavar="T", help="API token (or bearer token) for --url")
    if pg:
        g.add_argument(
            "--pg",
            metavar="DSN",
            help="a collector's PostgreSQL trail (libpq DSN or URI; any role that may SELECT "
            "it; keep the password in ~/.pgpass or PGPASSWORD, not in the DSN)",
        )


def _source(args) -> tuple[str, str]:
    pg = getattr(args, "pg", None)
    if sum(bool(x) for x in (args.url, args.db, pg)) > 1:
        raise CLIError("give one of --db, --url or --pg")
    if pg:
        return "pg", pg
    if args.url:
        if not args.token:
            raise CLIError("--url needs --token")
        return "url", args.url.rstrip("/")
    return "db", args.db or default_db()


def _api(
    args, path: str, params: dict | None = None, method: str = "GET", body: dict | None = None
) -> dict:
    query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None})
    url = f"{args.url.rstrip('/')}/jupyter-audit/api/{path}" + (f"?{query}" if query else "")
    from .runner import authorization

    headers = {"Authorization": authorization(args.token)}
    data = None
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read()).get("message")
        except ValueError:
            message = None
        raise CLIError(f"server answered {e.code}: {message or e.reason}", e.code) from None
    except urllib.error.URLError as e:
        raise CLIError(f"cannot reach {args.url}: {e.reason}") from None


def _open_db(path: str):
    from ..store.errors import TrailError
    from ..store.schema import open_readable

    try:
        return open_readable(path)
    except TrailError as e:
        raise CLIError(str(e)) from None


def _open_source(kind: str, where: str):
    """(read connection, meta) of the trail file (`--db`) or a collector's PostgreSQL trail
    (`--pg`: one REPEATABLE READ snapshot, run through the same read modules); the caller
    closes the connection."""
    if kind != "pg":
        return _open_db(where)
    try:
        from ..store.pg.connection import PortableCursor
        from ..store.pg.snapshot import open_readable
    except ImportError:
        raise CLIError("--pg needs psycopg: pip install 'jupyter-audit[collector]'") from None
    from ..store.errors import TrailError

    try:
        con, meta = open_readable(where)
    except TrailError as e:
        raise CLIError(str(e)) from None
    return PortableCursor(con, owned=True), meta


def _pubkeys(args) -> list[bytes] | None:
    from ..store.signing import KeyError_, load_public

    if not getattr(args, "pubkey", None):
        return None
    try:
        return [load_public(Path(args.pubkey).read_bytes())]
    except OSError as e:
        raise CLIError(f"cannot read --pubkey {args.pubkey}: {e.strerror}") from None
    except KeyError_ as e:
        raise CLIError(f"--pubkey {args.pubkey}: {e}") from None


# ---------------------------------------------------------------------------- verify
def cmd_verify(args) -> int:
    if args.bundle:
        return _verify_bundle(args)
    pinned = _pubkeys(args)
    if args.archive:  # archive alone, or archive + trail (cli/archive.py)
        from .archive import verify_with_archive

        result = verify_with_archive(args, pinned)
        live = result.pop("trail", None) or args.db
        where = f"{args.archive}" + (f" + {live}" if live else "")
        if args.json:
            print(json.dumps(result, indent=2, sort_keys=True))
        else:
            _print_verify(where, result)
        return EXIT_OK if result["ok"] else EXIT_TAMPERED
    kind, where = _source(args)
    if kind == "url":
        if args.checkpoints:
            raise CLIError("--checkpoints works with --db; the server reads its own files")
        params = {"deep": "true" if args.deep else None}
        if pinned:
            import base64

            params["pubkey"] = base64.b64encode(pinned[0]).decode()
        result = _api(args, "verify", params)
    else:
        from ..store.errors import TrailError

        extra = [Path(p) for p in args.checkpoints or []]
        for p in extra:
            if not p.exists():
                raise CLIError(f"--checkpoints {p}: no such file")
        try:
            if kind == "pg":
                result = _verify_pg(where, extra, pinned, args.deep)
            else:
                from ..store.verify import verify_path

                result = verify_path(
                    where, checkpoint_files=extra, trusted_keys=pinned, deep=args.deep
                ).to_dict()
        except TrailError as e:
            raise CLIError(str(e)) from None
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        _print_verify(result.pop("trail", where), result)
    return EXIT_OK if result["ok"] else EXIT_TAMPERED


def _verify_pg(dsn: str, checkpoint_files: list[Path], pinned, deep: bool) -> dict:
    """`verify --pg`: the collector's trail as of one snapshot. Its checkpoint file is
    wherever the collector writes it (no trail file to sit beside): pass it, or a copy, with
    --checkpoints, and the collector's public key with --pubkey."""
    try:
        from ..store.pg.connection import redacted
        from ..store.pg.verify import verify_dsn
    except ImportError:
        raise CLIError("--pg needs psycopg: pip install 'jupyter-audit[collector]'") from None
    result = verify_dsn(dsn, checkpoint_files=checkpoint_files, trusted_keys=pinned, deep=deep)
    if not checkpoint_files:
        result.warnings.append(
            "no checkpoint file given (--checkpoints FILE, the collector's or a copy): the "
            "tail is bounded only by the checkpoints inside the database"
        )
    out = result.to_dict()
    out["trail"] = redacted(dsn)
    return out


def _print_verify(where: str, r: dict) -> None:
    upto = r.get("intact_upto", r["last_seq"])
    if r["ok"]:
        print(f"OK: trail {where} is intact up to its last record, #{r['last_seq']}")
    else:
        bad = r["first_bad_seq"]
        print(f"TAMPERED: {f'record #{bad}' if bad is not None else 'trail'}: {r['problem']}")
        print(f"  {r['detail']}")
        for p in r["problems"][1:]:
            where = f"#{p['seq']}: " if p["seq"] is not None else ""
            print(f"  also: {where}{p['detail']}")
    print(
        f"  events: {r['events']} (last #{r['last_seq']}; the chain holds up to #{upto}, "
        f"hash {r['last_hash'][:16]}…)"
    )
    cp, signed = r.get("checkpoint"), r.get("signed")
    if cp:
        print(
            f"  last signed checkpoint: #{cp['seq']} at {cp['time']}, key {cp['key_id']} "
            f"(signature valid, records match; key: {r.get('key_source')})"
        )
    elif signed:
        print(
            f"  last signed checkpoint checked: #{signed['seq']} at {signed['time']}, key "
            f"{signed['key_id']} (signature valid; the records do not match it)"
        )
    elif r.get("checkpoints_checked"):
        print(f"  {r['checkpoints_checked']} checkpoint(s) checked; none with a valid signature")
    else:
        print("  no signed checkpoint yet")
    sources = r.get("checkpoint_sources") or []
    if r.get("independent_copy"):
        print(f"  checkpoints read from: {', '.join(sources) or '(none found)'}")
    else:
        print(
            f"  what this covers: intact up to the last checkpoint in "
            f"{', '.join(sources) or 'the file beside the trail'}; no independent copy given, so "
            "a tail cut together with its checkpoint lines would not show (pass "
            "--checkpoints COPY, or set c.AuditApp.checkpoint_mirror_path)"
        )
    for w in r.get("warnings") or []:
        print(f"  warning: {w}")


def _verify_bundle(args) -> int:
    from ..store.export import ExportError, load_bundle, verify_bundle

    try:
        data = load_bundle(args.bundle)
    except ExportError as e:
        raise CLIError(str(e)) from None
    res = verify_bundle(data, trusted_keys=_pubkeys(args))
    if args.json:
        print(json.dumps(res.to_dict(), indent=2, sort_keys=True))
    else:
        cp = res.checkpoint or {}
        if res.ok:
            print(
                f"OK: {res.records} record(s) are included in the trail signed at checkpoint "
                f"#{cp.get('seq')} ({cp.get('time')}, key {cp.get('key_id')})"
            )
        else:
            print(f"FAILED: {res.problems[0]}")
            for p in res.problems[1:]:
                print(f"  also: {p}")
        if res.uncovered:
            print(f"  {len(res.uncovered)} record(s) newer than the checkpoint are not proven")
        print("  This proves inclusion, not completeness: records left out of the export")
        print("  are neither shown nor vouched for.")
    return EXIT_OK if res.ok else EXIT_TAMPERED


# ---------------------------------------------------------------------------- export
def _export_bundle(args, kind: str, where: str, filters: dict, since, until) -> dict:
    """The export bundle from the running server (`--url`) or the trail file."""
    from ..store.trail import build_bundle

    if kind == "url":
        params = dict(filters)
        params["since"] = since.isoformat() if since else None
        params["until"] = until.isoformat() if until else None
        return _api(args, "export", params)
    con, _meta = _open_source(kind, where)
    try:
        return build_bundle(con, since=since, until=until, **filters)
    finally:
        con.close()


def cmd_export(args) -> int:
    from ..store.export import ExportError
    from ..store.filters import parse_time
    from ..store.trail import build_bundle, write_export

    filters = {
        "user": args.user,
        "notebook": args.notebook,
        "trace": args.trace,
    }
    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
    except ValueError as e:
        raise CLIError(f"--since/--until: {e}") from None
    kind, where = _source(args)
    if args.archive:
        from .archive import combined
        from .trace_ref import trace_in

        with combined(args) as con:
            if args.trace:  # a full id or an unambiguous prefix, in archive + trail
                filters["trace"] = trace_in(con, args.trace)
            bundle = build_bundle(con, since=since, until=until, **filters)
    else:
        if args.trace:  # a full id or an unambiguous prefix (cli/trace_ref.py)
            from .trace_ref import trace_ref

            filters["trace"] = trace_ref(args, args.trace)
        bundle = _export_bundle(args, kind, where, filters, since, until)
    try:
        summary = write_export(bundle, args.format, Path(args.output))
    except (ExportError, OSError) as e:
        raise CLIError(f"cannot write {args.output}: {e}") from None
    print(f"exported {summary['records']} record(s) to {summary['output']}")
    print(f"bundle: {summary['bundle']} (verify with: jupyter audit verify --bundle {args.output})")
    if summary["uncovered"]:
        print(f"  {len(summary['uncovered'])} record(s) are newer than the last signed checkpoint")
    return EXIT_OK


# ---------------------------------------------------------------------------- pg-setup
def cmd_pg_setup(args) -> int:
    """Create a PostgreSQL trail's schema and its writer, reader and maintenance roles."""
    try:
        from ..store.pg import roles
    except ImportError:
        raise CLIError("pg-setup needs psycopg: pip install 'jupyter-audit[collector]'") from None
    from ..store.errors import TrailError

    try:
        roles.setup(
            args.pg,
            writer=args.writer,
            reader=args.reader,
            maintenance=args.maintenance,
            partition_size=args.partition_size,
        )
    except (TrailError, ValueError) as e:
        raise CLIError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - the database refused (psycopg's error, one line)
        raise CLIError(f"setup failed: {str(e).strip().splitlines()[0]}") from None
    print(f"trail schema ready; roles: writer {args.writer} (INSERT/SELECT on the log),")
    print(
        f"  reader {args.reader} (SELECT), maintenance {args.maintenance} "
        "(SELECT; drops partitions the log records as archived)"
    )
    print("  give each role a password or certificate login as your pg_hba.conf requires")
    return EXIT_OK


# ---------------------------------------------------------------------------- mask, demo
def _audit_config(path: str | None) -> dict:
    """The ``c.AuditApp`` section of the Jupyter server configuration the server would read
    (``jupyter_server_config.{json,py}`` along the Jupyter config path), or of ``path``."""
    from jupyter_core.paths import jupyter_config_path
    from traitlets.config.loader import Config, JSONFileConfigLoader, PyFileConfigLoader

    if path:
        files = [Path(path)]
        if not files[0].is_file():
            raise CLIError(f"no config file {path}")
    else:  # lowest priority first, as jupyter_server merges them
        files = [
            Path(d) / f"jupyter_server_config{ext}"
            for d in reversed(jupyter_config_path())
            for ext in (".json", ".py")
        ]
    cfg = Config()
    for f in files:
        if not f.is_file():
            continue
        loader_class = JSONFileConfigLoader if f.suffix == ".json" else PyFileConfigLoader
        try:
            cfg.merge(loader_class(f.name, path=str(f.parent)).load_config())
        except Exception as e:  # noqa: BLE001 - a user's config file: say which one failed
            raise CLIError(f"config file {f}: {e}") from None
    return dict(cfg["AuditApp"]) if "AuditApp" in cfg else {}


def cmd_mask(args) -> int:
    from ..masking import MaskingError, load_or_create_key
    from ..masking.config import configured_engine, options_from

    section = _audit_config(args.config)
    if args.key:
        key_path = Path(args.key)
    elif section.get("masking_key_path") and not args.db:
        key_path = Path(section["masking_key_path"])
    else:
        key_path = Path(args.db or section.get("db_path") or default_db()).parent / "masking.key"
    try:
        key = load_or_create_key(key_path)
    except (MaskingError, OSError) as e:
        raise CLIError(f"masking key {key_path}: {e}") from None
    try:
        engine = configured_engine(key, **options_from(section))
    except MaskingError as e:
        raise CLIError(f"masking configuration: {e}") from None
    print(engine.mask_text(" ".join(args.text)))
    return EXIT_OK


def cmd_run(args) -> int:
    from .runner import TOKEN_ENV, RunError, run_notebook

    args.token = args.token or os.environ.get(TOKEN_ENV)  # kept out of `ps` that way
    if not args.token:
        raise CLIError(f"--url needs --token (or {TOKEN_ENV} in the environment)")
    _, url = _source(args)
    try:
        return run_notebook(
            args.notebook,
            url=url,
            token=args.token,
            output=args.output,
            kernel=args.kernel,
            path=args.path,
            timeout=args.timeout,
        )
    except RunError as e:
        raise CLIError(str(e)) from None


# ---------------------------------------------------------------------------- token
def _token_store(args):
    """A TokenStore on a stopped server's trail, with the keys beside it (never new ones)."""
    from ..identity.tokens import TokenStore

    writer = _open_writer(args.db or default_db())
    return writer, TokenStore(writer)


def _open_writer(db_path):
    """A Writer on a stopped server's trail, with the keys beside it (never new ones)."""
    from ..masking import MaskingEngine, load_or_create_key
    from ..store.errors import TrailError
    from ..store.signing import SigningKey
    from ..store.writer import Writer

    db = Path(db_path)
    keys = [db.parent / "signing-key.pem", db.parent / "masking.key"]
    if not db.exists():
        raise CLIError(f"no trail at {db}: file does not exist")
    missing = [str(k) for k in keys if not k.exists()]
    if missing:
        raise CLIError(f"the trail's keys are not beside it ({', '.join(missing)}); use --url")
    try:
        writer = Writer(
            db, MaskingEngine(load_or_create_key(keys[1])), SigningKey.load(keys[0])
        ).open()
    except TrailError as e:
        raise CLIError(str(e)) from None
    return writer


def _local_admin() -> dict:
    from ..identity import make_snapshot, os_username

    # someone with the trail file in hand: the OS account, recorded as such
    return make_snapshot(username=os_username(), auth_method="local")


def _print_token_row(t: dict) -> None:
    print(
        f"{t['id']}  {t['state']:<8} {t['service_account']}  owner {t['owner']}  "
        f"expires {t['expires_at'] or 'never'}"
        + (f"  revoked {t['revoked_at']} by {t['revoked_by']}" if t.get("revoked_at") else "")
    )


def cmd_token(args) -> int:
    from ..identity.tokens import TokenError

    kind, _ = _source(args)
    if kind == "url":
        if args.action == "create":
            body = {
                "service_account": args.service_account,
                "owner": args.owner,
                "expires": args.expires,
            }
            result = _api(args, "tokens", method="POST", body=body)
        elif args.action == "list":
            result = _api(args, "tokens")
        else:
            body = {"reason": args.reason} if args.reason else {}
            result = _api(args, f"tokens/{args.token_id}", method="DELETE", body=body)
    else:
        writer, store = _token_store(args)
        try:
            if args.action == "create":
                token, record = store.create(
                    args.service_account, args.owner, args.expires, _local_admin()
                )
                result = {**record, "token": token}
            elif args.action == "list":
                result = {"tokens": store.list()}
            else:
                result = store.revoke(args.token_id, _local_admin(), args.reason)
        except TokenError as e:
            raise CLIError(str(e)) from None
        except KeyError:
            raise CLIError(f"no token {args.token_id}") from None
        finally:
            writer.close()
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.action == "create":
        print(f"created token {result['id']} for service account {result['service_account']}")
        print(f"owner {result['owner']}, expires {result['expires_at']}")
        print("the token is shown only this once; store it in a secret store now:")
        print(result["token"])
    elif args.action == "list":
        for t in result["tokens"]:
            _print_token_row(t)
        if not result["tokens"]:
            print("no service tokens")
    else:
        print(f"revoked token {result['id']} ({result['service_account']})")
    return EXIT_OK


def cmd_demo(args) -> int:
    if args.db:
        from .demo import seed_demo_trail

        n = seed_demo_trail(args.db)
        print(f"wrote a demo trail with {n} events to {args.db}")
        return EXIT_OK
    # without --db: the live demo world (jupyter_audit/demo/)
    try:
        from ..demo.world import DemoError, run_demo
    except ImportError as e:  # nbformat is always there; the provider comes with [demo]
        raise CLIError(f"the live demo cannot load: {e}") from None
    import importlib.util

    if args.port is not None and not 1 <= args.port <= 65535:
        raise CLIError(f"--port {args.port}: a port is 1 to 65535")
    if importlib.util.find_spec("oidc_provider_mock") is None:
        raise CLIError("the live demo needs its extra: pip install 'jupyter-audit[demo]'")
    try:
        return run_demo(args.dir, args.port, args.allow_root, args.headless, args.binder)
    except DemoError as e:
        raise CLIError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter audit", description="Verify, export and read jupyter-audit trails."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("verify", help="check that the trail was never edited, reordered or cut")
    _add_source(p, pg=True)
    p.add_argument("--pubkey", metavar="FILE", help="trusted signing public key (PEM/base64/hex)")
    p.add_argument(
        "--checkpoints", metavar="FILE", action="append", help="extra checkpoint file (copy)"
    )
    p.add_argument("--bundle", metavar="PATH", help="verify an export bundle instead")
    p.add_argument("--deep", action="store_true", help="also recompute every Merkle leaf")
    from .archive import add_archive_option
    from .archive import add_parser as add_archive_parser

    add_archive_option(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("export", help="export records with a verifiable bundle")
    _add_source(p, pg=True)
    p.add_argument("--format", choices=("jsonl", "csv", "parquet"), default="jsonl")
    p.add_argument("--user", help="only events of this username")
    p.add_argument("--since", help="ISO 8601 time (UTC unless an offset is given)")
    p.add_argument("--until", help="ISO 8601 time")
    p.add_argument("--notebook", metavar="PATH", help="only events of this notebook")
    p.add_argument(
        "--trace", metavar="ID", help="only events of this trace (its id, or 6+ first characters)"
    )
    p.add_argument("-o", "--output", metavar="OUT", required=True)
    add_archive_option(p)
    p.set_defaults(func=cmd_export)

    from ..store.pg.roles import MAINTENANCE, READER, WRITER  # no psycopg needed for these
    from ..store.pg.schema import PARTITION_SIZE

    p = sub.add_parser(
        "pg-setup",
        help="create a collector's PostgreSQL trail schema and its database roles",
        description="As a PostgreSQL role that may create roles and tables: create the trail's "
        "schema (if missing) in the DSN's database and schema, and the writer (the "
        "collector: INSERT and SELECT on the log, never UPDATE, DELETE or TRUNCATE), reader "
        "(auditors: SELECT) and maintenance roles with their grants.",
    )
    p.add_argument("--pg", metavar="DSN", required=True, help="an administrator's DSN")
    p.add_argument("--writer", default=WRITER, help="the collector's role (%(default)s)")
    p.add_argument("--reader", default=READER, help="the auditors' role (%(default)s)")
    p.add_argument("--maintenance", default=MAINTENANCE, help="archive role (%(default)s)")
    p.add_argument(
        "--partition-size",
        type=int,
        default=PARTITION_SIZE,
        metavar="N",
        help="records a partition of the log holds, the unit that leaves the live trail once "
        "archived (%(default)s; for a schema made now, an existing one keeps its own)",
    )
    p.set_defaults(func=cmd_pg_setup)

    from .show import add_parser as add_show_parser  # show [TRACE] (cli/show.py)

    add_show_parser(sub)

    p = sub.add_parser(
        "run",
        help="execute a notebook through a running server, attributed to the token's identity",
        description="Execute NOTEBOOK cell by cell in a new kernel session of a running Jupyter "
        "server, so the server records every cell and operation against the token's identity; "
        "write the executed notebook. Exit codes: 0 all cells ran, 1 a cell failed or timed "
        "out, 2 usage, authentication or connection error.",
    )
    p.add_argument("notebook", metavar="NOTEBOOK")
    p.add_argument(
        "--url", metavar="URL", required=True, help="base URL of a running Jupyter server"
    )
    p.add_argument(
        "--token", metavar="T", help="API token (or bearer token); default: $JUPYTER_AUDIT_TOKEN"
    )
    p.add_argument("-o", "--output", metavar="OUT", help="default: NOTEBOOK's stem + .run.ipynb")
    p.add_argument(
        "--kernel", metavar="NAME", help="kernelspec; default: the notebook's, or python3"
    )
    p.add_argument("--path", metavar="PATH", help="session path on the server; default: file name")
    p.add_argument("--timeout", type=float, default=600, metavar="S", help="per cell (default 600)")
    p.set_defaults(func=cmd_run, db=None)

    p = sub.add_parser("token", help="service-account tokens for automated jobs (admins)")
    tsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    t = tsub.add_parser("create", help="create a token; it is shown once")
    t.add_argument("--service-account", required=True, metavar="NAME")
    t.add_argument("--owner", required=True, metavar="EMAIL", help="the person responsible")
    t.add_argument("--expires", default="30d", help="30d, 12h, 2w or an ISO date (default 30d)")
    t = tsub.add_parser("list", help="list tokens (never their secrets)")
    t = tsub.add_parser("revoke", help="revoke a token now")
    t.add_argument("token_id", metavar="ID")
    t.add_argument("--reason", help="why (recorded in the trail)")
    for t in tsub.choices.values():
        _add_source(t)
        t.add_argument("--json", action="store_true", help="machine-readable output")
        t.set_defaults(func=cmd_token, reason=None)

    from . import approvals

    approvals.add_parser(sub)

    p = sub.add_parser("mask", help="print TEXT as the trail would store it")
    p.add_argument("text", nargs="+", metavar="TEXT")
    p.add_argument("--db", metavar="PATH", help="trail whose masking key to use")
    p.add_argument("--key", metavar="FILE", help="masking key file")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="read c.AuditApp.masking_* from this file (default: the Jupyter server's config)",
    )
    p.set_defaults(func=cmd_mask)

    from .policy import add_parser as add_policy_parser  # policy check (cli/policy.py)

    add_policy_parser(sub)

    add_archive_parser(sub)  # archive (cli/archive.py)

    from .replay import add_parser as add_replay_parser  # replay (cli/replay.py)

    add_replay_parser(sub)

    from .collector import add_parser as add_collector_parser  # collector (cli/collector.py)

    add_collector_parser(sub)

    p = sub.add_parser(
        "demo",
        help="start the live demo (JupyterLab, demo users, data, notebook), or write a small "
        "demo trail with --db",
        description="Without --db: start JupyterLab with jupyter-audit and a demo world, all "
        "local: demo users at a local OIDC provider, a sample database, an API stub, a demo "
        "notebook; Ctrl-C stops it and verifies the trail (needs jupyter-audit[demo]). With "
        "--db PATH: write a small synthetic demo trail to PATH and exit.",
    )
    p.add_argument("--db", metavar="PATH", help="write a synthetic demo trail here and exit")
    p.add_argument(
        "--dir",
        metavar="DIR",
        help="live demo directory (default: a new one under the Jupyter data directory)",
    )
    p.add_argument("--port", type=int, metavar="N", help="server port (default 8888 if free)")
    p.add_argument("--allow-root", action="store_true", help="let Jupyter run as root")
    p.add_argument(
        "--headless",
        action="store_true",
        help="play the whole story without a browser (the notebook run as the data "
        "scientist, its DELETE approved by the reviewer), stop and verify",
    )
    p.add_argument(
        "--binder",
        metavar="BASE_URL",
        help="serve the demo under BASE_URL with the demo sign-in page instead of the "
        "provider's (for Binder, behind jupyter-server-proxy: binder/start)",
    )
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CLIError as e:
        print(f"jupyter audit {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR
    except RecursionError:
        print(f"jupyter audit {args.command}: error: input nested too deeply", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:  # noqa: BLE001 - a damaged file, a full disk: one line, exit 2
        if os.environ.get("JUPYTER_AUDIT_DEBUG"):
            raise
        kind = "cannot read the trail" if type(e).__module__.startswith("duckdb") else "failed"
        print(
            f"jupyter audit {args.command}: error: {kind}: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''} "
            "(JUPYTER_AUDIT_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_ERROR
