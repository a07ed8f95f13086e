"""The trail's DuckDB schema, format version, migrations and locked connections.

The `events` table is the append-only, hash-chained log (source of truth). Every other table
is derived from it and may be rebuilt (`rebuild_derived`), except `identities` (snapshots
referenced by hash from the log) and `meta` (format version, trail id, writer high-water mark).
Migrations that only add or change derived things run here, in place; one that rewrites the
`events` table is a copy and swap (`store/migrate.py`).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import duckdb

from .errors import TrailError, TrailLockedError
from .traces import DROP_SYSTEM_PARTICIPANTS

FORMAT_VERSION = 4

# Format 4 (docs/design-notes.md, "Storage"): no `prev_hash` column (it is the hash of the
# row before, and the record names it too: `store.chain` derives it), and the records
# compressed with zstd at DuckDB's checkpoints (a quarter of their size for ~2 µs of CPU per
# row; DuckDB's automatic choice, FSST, halves them for 20 µs). The hashes are random bytes:
# compressing them gains nothing. `leaf` stays, so inclusion proofs need not hash every record.
EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS events (
    seq BIGINT NOT NULL,
    kind VARCHAR NOT NULL,
    time TIMESTAMP NOT NULL,
    trace_id VARCHAR,
    kernel_id VARCHAR,
    notebook VARCHAR,
    msg_id VARCHAR,
    identity_id VARCHAR,
    event_id VARCHAR NOT NULL,
    hash BLOB USING COMPRESSION uncompressed NOT NULL,
    leaf BLOB USING COMPRESSION uncompressed NOT NULL,
    -- the canonical bytes, exactly as hashed and signed
    record BLOB USING COMPRESSION zstd NOT NULL
)
"""

DDL = [
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    EVENTS_DDL,
    # timelines of one trace among millions of events (ART index; costs ~1 µs per insert)
    "CREATE INDEX IF NOT EXISTS events_trace ON events (trace_id)",
    """CREATE TABLE IF NOT EXISTS identities (
        identity_id VARCHAR PRIMARY KEY,
        snapshot VARCHAR NOT NULL,
        username VARCHAR,
        first_seq BIGINT NOT NULL
    )""",
    # event ids chosen by clients (kernels), for exactly-once delivery of retried batches
    """CREATE TABLE IF NOT EXISTS client_events (
        event_id VARCHAR PRIMARY KEY,
        seq BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS traces (
        trace_id VARCHAR PRIMARY KEY,
        kernel_id VARCHAR,
        notebook VARCHAR,
        started_at TIMESTAMP,
        last_at TIMESTAMP,
        first_seq BIGINT,
        last_seq BIGINT,
        events BIGINT,
        cells BIGINT,
        operations BIGINT,
        status VARCHAR
    )""",
    """CREATE TABLE IF NOT EXISTS trace_users (
        trace_id VARCHAR NOT NULL,
        username VARCHAR NOT NULL,
        PRIMARY KEY (trace_id, username)
    )""",
]

# Service-account tokens: state, not log. Only a hash of each secret is kept; creation and
# revocation are also recorded in the log as `token.created` / `token.revoked`.
SERVICE_TOKENS_DDL = """CREATE TABLE IF NOT EXISTS service_tokens (
    token_id VARCHAR PRIMARY KEY,
    secret_hash VARCHAR NOT NULL,
    service_account VARCHAR NOT NULL,
    owner VARCHAR NOT NULL,
    owner_identity_id VARCHAR,
    created_at TIMESTAMP NOT NULL,
    created_by VARCHAR NOT NULL,
    expires_at TIMESTAMP,
    revoked_at TIMESTAMP,
    revoked_by VARCHAR
)"""
DDL.append(SERVICE_TOKENS_DDL)

DERIVED_TABLES = ("traces", "trace_users")

# Migrations from version N to N+1, applied in order inside one transaction.
# 1 -> 2: service-account tokens. 2 -> 3: the server's own events make no one a trace's
# participant (`traces.PEOPLE_ONLY_FORMAT`); the log is not touched, so checkpoints still check.
MIGRATIONS: dict[int, list[str]] = {1: [SERVICE_TOKENS_DDL], 2: [DROP_SYSTEM_PARTICIPANTS]}
# Versions whose step to the next rewrites `events` into a fresh file (`store/migrate.py`):
# 3 -> 4, the compact layout. Every record, hash and leaf is copied byte for byte, so what
# verified and every checkpoint signed before still check.
REWRITES = frozenset({3})

CONNECTION_CONFIG: dict[str, str | bool] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
    # the WAL is folded into the file when it reaches this size (and when the Writer goes
    # quiet or closes): DuckDB's 16 MB default rewrites the table's open row group every
    # ~10,000 events, which costs twice the inserts
    "checkpoint_threshold": "64MB",
}


def connect(
    path: str | os.PathLike, *, read_only: bool = False, memory_limit: str | None = None
) -> duckdb.DuckDBPyConnection:
    """Open a trail file with extension auto-install disabled and the configuration locked.
    `memory_limit`: DuckDB's (default 80 % of RAM; its buffer cache grows to it)."""
    path = Path(path)
    if read_only and not path.exists():
        raise TrailError(f"no trail at {path}: file does not exist")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        config: dict = dict(CONNECTION_CONFIG)
        if memory_limit is not None:
            config["memory_limit"] = memory_limit
        return duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.IOException as e:
        msg = str(e)
        if "lock" in msg.lower():
            raise TrailLockedError(
                f"{path} is locked by another process (a running Jupyter server?). "
                "Use --url URL --token TOKEN to ask the running server instead."
            ) from None
        raise TrailError(f"cannot open {path}: {msg}") from None
    except duckdb.Error as e:
        raise TrailError(f"{path} is not a DuckDB trail: {e}") from None


def read_meta(con) -> dict[str, str]:
    try:
        return dict(con.execute("SELECT key, value FROM meta").fetchall())
    except duckdb.CatalogException:
        raise TrailError("not a jupyter-audit trail (no meta table)") from None


def check_version(meta: dict[str, str]) -> int:
    raw = meta.get("format_version")
    if raw is None:
        raise TrailError("not a jupyter-audit trail (no format version)")
    try:
        version = int(raw)
    except ValueError:
        raise TrailError(f"unknown trail format version {raw!r}") from None
    if version > FORMAT_VERSION or version < 1:
        raise TrailError(
            f"unknown trail format version {version} (this jupyter-audit reads up to "
            f"{FORMAT_VERSION}); upgrade jupyter-audit to read it"
        )
    return version


def open_readable(path) -> tuple[duckdb.DuckDBPyConnection, dict[str, str]]:
    """Open an existing trail read-only and check it is one we understand."""
    con = connect(path, read_only=True)
    try:
        meta = read_meta(con)
        check_version(meta)
    except BaseException:
        con.close()
        raise
    return con, meta


def initialise(con) -> dict[str, str]:
    """Create or migrate the schema of a trail opened read-write; return its meta. Stops
    before a migration that rewrites `events` (`REWRITES`): its meta then names an older
    format, which `store.migrate.open_writable` brings forward by copy and swap."""
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if tables and "meta" not in tables:
        raise TrailError("file is a DuckDB database but not a jupyter-audit trail")
    if not tables:
        con.execute("BEGIN")
        for stmt in DDL:
            con.execute(stmt)
        con.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [
                ["format_version", str(FORMAT_VERSION)],
                ["trail_id", str(uuid.uuid4())],
                ["last_seq", "0"],
                ["last_hash", bytes(32).hex()],
                ["frontier", ""],
            ],
        )
        con.execute("COMMIT")
    meta = read_meta(con)
    version = check_version(meta)
    reached = version
    while reached < FORMAT_VERSION and reached not in REWRITES:
        reached += 1
    if reached > version:
        con.execute("BEGIN")
        for v in range(version, reached):
            for stmt in MIGRATIONS.get(v, []):
                con.execute(stmt)
        con.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", [str(reached)])
        con.execute("COMMIT")
        meta = read_meta(con)
    return meta
