"""`jupyter audit archive [--db TRAIL] [--now]`: archive a stopped server's trail now, and the
`--archive PATH` option of `verify`, `export` and `show` (archive + live trail read as one).

Archiving settings come from the server's configuration (`c.AuditApp.archive_path`,
`archive_after`, `retention`, `archive_endpoint_url`, `archive_lock_for`), or the flags.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from .main import EXIT_OK, CLIError, _audit_config, default_db


def add_archive_option(p) -> None:
    """`--archive PATH` (and its S3 endpoint) for verify, export and show."""
    p.add_argument(
        "--archive",
        metavar="PATH",
        help="archive directory or s3://bucket/prefix: read it with the trail (--db or --pg) "
        "or alone",
    )
    p.add_argument("--endpoint-url", metavar="URL", help="S3-compatible endpoint for --archive")
    if p.prog.endswith("verify"):
        p.add_argument(
            "--expect-last-seq",
            metavar="N",
            type=int,
            help="with --archive: the archive must reach record N (its tail cut shows)",
        )


def _target(where: str, endpoint_url: str | None, *, create: bool = False):
    from ..store.archive_target import open_target
    from ..store.errors import TrailError

    try:
        return open_target(where, endpoint_url, create=create)
    except TrailError as e:
        raise CLIError(str(e)) from None


def verify_with_archive(args, pinned) -> dict:
    """`verify --archive PATH [--db TRAIL]`: the archive alone, or with the trail."""
    from ..store.archive_verify import verify_archive
    from ..store.errors import TrailError

    if args.url:
        raise CLIError("--archive reads files: use --db (server stopped), not --url")
    if args.db and getattr(args, "pg", None):
        raise CLIError("give one of --db or --pg with --archive")
    extra = [Path(p) for p in args.checkpoints or []]
    for p in extra:
        if not p.exists():
            raise CLIError(f"--checkpoints {p}: no such file")
    target = _target(args.archive, args.endpoint_url)
    if getattr(args, "pg", None):
        return _verify_with_pg(args, target, extra, pinned)
    try:
        return verify_archive(
            target,
            args.db,
            trusted_keys=pinned,
            checkpoint_files=extra,
            deep=args.deep,
            expect_last_seq=args.expect_last_seq,
        ).to_dict()
    except TrailError as e:
        raise CLIError(str(e)) from None


def _verify_with_pg(args, target, extra: list[Path], pinned) -> dict:
    """`verify --archive PATH --pg DSN`: the archive and the collector's PostgreSQL trail as
    one chain (`store.pg.verify.verify_with_archive`)."""
    from ..store.errors import TrailError

    try:
        from ..store.pg.connection import redacted
        from ..store.pg.verify import verify_with_archive as verify_pg
    except ImportError:
        raise CLIError("--pg needs psycopg: pip install 'jupyter-audit[collector]'") from None
    try:
        result = verify_pg(
            target,
            args.pg,
            checkpoint_files=extra,
            trusted_keys=pinned,
            deep=args.deep,
            expect_last_seq=args.expect_last_seq,
        )
    except TrailError as e:
        raise CLIError(str(e)) from None
    out = result.to_dict()
    out["trail"] = redacted(args.pg)
    return out


@contextlib.contextmanager
def combined(args) -> Iterator:
    """A read-only connection to archive (`--archive`) + trail (`--db` or `--pg`, if given)
    as one; the archive verified first (against the live trail, with `--pg`)."""
    from ..store.archive_verify import open_combined
    from ..store.errors import TrailError

    if args.url:
        raise CLIError("--archive reads files: use --db (server stopped) or --pg, not --url")
    pg = getattr(args, "pg", None)
    if args.db and pg:
        raise CLIError("give one of --db or --pg with --archive")
    if pg:
        try:
            from ..store.pg.combined import open_combined as open_with_pg
        except ImportError:
            raise CLIError("--pg needs psycopg: pip install 'jupyter-audit[collector]'") from None
    target = _target(args.archive, args.endpoint_url)
    with tempfile.TemporaryDirectory(prefix="jupyter-audit-archive-") as scratch:
        try:
            if pg:
                con, meta = open_with_pg(target, Path(scratch), pg)
            else:
                con, meta = open_combined(target, Path(scratch), args.db)
        except TrailError as e:
            raise CLIError(str(e)) from None
        try:
            yield con
        finally:
            con.close()


def cmd_archive(args) -> int:
    from ..identity import make_snapshot, os_username
    from ..store.archive import SEGMENT_ROWS, parse_age
    from ..store.archiver import run_archive
    from ..store.errors import TrailError
    from ..store.filters import parse_time
    from .main import _open_writer

    section = _audit_config(args.config)
    where = args.to or section.get("archive_path")
    if not where:
        raise CLIError("no archive: pass --to PATH or set c.AuditApp.archive_path")
    try:
        after = parse_age(args.after or section.get("archive_after") or "90d")
        retention = parse_age(args.retention or section.get("retention") or "0d")
        lock = section.get("archive_lock_for") or ""
        lock_for = parse_age(lock) if lock else None
        now = parse_time(args.now) if args.now else datetime.now(UTC)
    except ValueError as e:
        raise CLIError(str(e)) from None
    endpoint = args.endpoint_url or section.get("archive_endpoint_url") or None
    target = _target(where, endpoint, create=True)
    db = args.db or section.get("db_path") or default_db()
    try:
        writer = _open_writer(db)
    except CLIError as e:
        if "locked" not in str(e):
            raise
        raise CLIError(
            f"{db} is open in a running server: set c.AuditApp.archive_path there and it "
            "archives on its own (docs/archive.md)"
        ) from None
    try:
        done = run_archive(
            writer,
            target,
            archive_after=after,
            retention=max(retention, after),
            lock_for=lock_for,
            now=now,
            identity=make_snapshot(username=os_username(), auth_method="local"),
            segment_rows=args.segment_rows or SEGMENT_ROWS,
        )
    except TrailError as e:
        raise CLIError(str(e)) from None
    finally:
        writer.close()
    print(f"archived {len(done['archived'])} segment(s) to {target.url}")
    for name in done["removed"]:
        print(f"  removed from the live trail: {name}")
    print(f"  the live trail now begins at #{done['kept_from']}")
    return EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser(
        "archive",
        help="archive sealed segments of a stopped server's trail now (docs/archive.md)",
    )
    p.add_argument("--db", metavar="PATH", help="trail file (server stopped)")
    p.add_argument("--to", metavar="PATH", help="directory or s3://bucket/prefix")
    p.add_argument("--after", metavar="AGE", help="archive segments older than this (90d)")
    p.add_argument("--retention", metavar="AGE", help="remove archived segments older than this")
    p.add_argument("--endpoint-url", metavar="URL", help="S3-compatible endpoint")
    p.add_argument(
        "--now",
        metavar="TIME",
        nargs="?",
        const="",
        help="run now; with an ISO 8601 TIME, judge ages as of then",
    )
    p.add_argument("--config", metavar="FILE", help="read c.AuditApp.archive_* from this file")
    p.add_argument(
        "--segment-rows",
        type=int,
        metavar="N",
        help="a segment ends at the first signed checkpoint from N records on (1000000)",
    )
    p.set_defaults(func=cmd_archive)
