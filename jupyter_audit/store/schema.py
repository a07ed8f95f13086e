"""The trail's DuckDB schema, format version, migrations and locked connections.

The `events` table is the append-only, hash-chained log (source of truth). Every other table
is derived from it and may be rebuilt (`rebuild_derived`), except `identities` (snapshots
referenced by hash from the log) and `meta` (format version, trail id, writer high-water mark).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import duckdb

from .errors import TrailError, TrailLockedError
from .traces import DROP_SYSTEM_PARTICIPANTS

FORMAT_VERSION = 3

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
    prev_hash BLOB USING COMPRESSION uncompressed NOT NULL,
    hash BLOB USING COMPRESSION uncompressed NOT NULL,
    leaf BLOB USING COMPRESSION uncompressed NOT NULL,
    -- canonical bytes; left uncompressed: compressing them costs more than the insert itself
    record BLOB USING COMPRESSION uncompressed NOT NULL
)
"""

# tables derived from the log (rebuilt by `queries.rebuild_derived`)
DERIVED_DDL = {
    "traces": """CREATE TABLE IF NOT EXISTS traces (
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
        status VARCHAR,
        queries BIGINT DEFAULT 0,
        http BIGINT DEFAULT 0,
        shell BIGINT DEFAULT 0,
        failed_cells BIGINT DEFAULT 0,
        risky BIGINT DEFAULT 0,
        approvals BIGINT DEFAULT 0,
        capture_gaps BIGINT DEFAULT 0,
        unattributed BIGINT DEFAULT 0
    )""",
    "trace_users": """CREATE TABLE IF NOT EXISTS trace_users (
        trace_id VARCHAR NOT NULL,
        username VARCHAR NOT NULL,
        PRIMARY KEY (trace_id, username)
    )""",
    # every name a trace's notebook had, with the first record that gave it
    "trace_notebooks": """CREATE TABLE IF NOT EXISTS trace_notebooks (
        trace_id VARCHAR NOT NULL,
        notebook VARCHAR NOT NULL,
        first_seq BIGINT NOT NULL,
        PRIMARY KEY (trace_id, notebook)
    )""",
    # the search index (store/search.py): filled after the fact, not by the Writer
    "search_terms": """CREATE TABLE IF NOT EXISTS search_terms (
        term VARCHAR NOT NULL,
        trace_id VARCHAR NOT NULL,
        seq BIGINT NOT NULL
    )""",
    "search_state": "CREATE TABLE IF NOT EXISTS search_state (indexed_seq BIGINT NOT NULL)",
}

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
    *DERIVED_DDL.values(),
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

DERIVED_TABLES = tuple(DERIVED_DDL)
#: the version of the derived tables' shapes and counting rules: a trail whose
#: `derived_version` differs has them rebuilt from the log when a Writer opens it
#: (`queries.rebuild_derived`); the log and its format are not touched. 1 (no meta key):
#: traces and trace_users before issue 15; 2: counts, trace_notebooks, search index
DERIVED_VERSION = 2

# Migrations from version N to N+1, applied in order inside one transaction.
# 1 -> 2: service-account tokens. 2 -> 3: the server's own events make no one a trace's
# participant (`traces.PEOPLE_ONLY_FORMAT`); the log is not touched, so checkpoints still check.
MIGRATIONS: dict[int, list[str]] = {1: [SERVICE_TOKENS_DDL], 2: [DROP_SYSTEM_PARTICIPANTS]}

CONNECTION_CONFIG: dict[str, str | bool] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
    # the WAL is folded into the file when it reaches this size (and when the Writer goes
    # quiet or closes): DuckDB's 16 MB default rewrites the table's open row group every
    # ~10,000 events, which costs twice the inserts
    "checkpoint_threshold": "64MB",
}


def connect(path: str | os.PathLike, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open a trail file with extension auto-install disabled and the configuration locked."""
    path = Path(path)
    if read_only and not path.exists():
        raise TrailError(f"no trail at {path}: file does not exist")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        return duckdb.connect(str(path), read_only=read_only, config=dict(CONNECTION_CONFIG))
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
    """Create or migrate the schema of a trail opened read-write; return its meta."""
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
                ["derived_version", str(DERIVED_VERSION)],
            ],
        )
        con.execute("COMMIT")
    meta = read_meta(con)
    version = check_version(meta)
    if version < FORMAT_VERSION:
        con.execute("BEGIN")
        for v in range(version, FORMAT_VERSION):
            for stmt in MIGRATIONS.get(v, []):
                con.execute(stmt)
        con.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", [str(FORMAT_VERSION)])
        con.execute("COMMIT")
        meta = read_meta(con)
    return meta
