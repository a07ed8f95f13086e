"""The PostgreSQL trail's schema: the partitioned log, its append-only trigger, the
high-water mark, the identity snapshots, client event ids and the derived trace tables.

`events` is the hash-chained log (source of truth), PARTITIONED BY RANGE (seq) in blocks of
`partition_size` sequence numbers (chosen when the schema is made, PARTITION_SIZE by default,
kept in `meta`), so that a block can leave the live trail after its archive copy verified
without a DELETE. The partitions are created ahead of need by `jupyter_audit_partitions(upto)`,
a SECURITY DEFINER function owned by the role that created the schema: the writer role may
EXECUTE it, so it never owns a partition (an owner may ALTER, DROP or TRUNCATE). A partition
leaves only through `jupyter_audit_drop_archived(first_seq)` (SECURITY DEFINER too, EXECUTE for
the maintenance role alone, `roles`), which refuses unless the log records that partition's
range as archived (`trail.archived`, ending at its last record's hash) and every row of it is
there and at or below the head; it records the new low end in `meta` (`archived_upto`) so
that the partition function never makes a dropped partition again. A trigger refuses UPDATE,
DELETE and TRUNCATE on the log, its identities and its event ids for every role (defence in
depth beside the grants of `roles`; a superuser can switch it off, which `verify` is there
for).
`head` holds the writer's high-water mark (last seq, hash, Merkle frontier), updated in the
transaction of every append. `traces`, `trace_users` and `trace_notebooks` are derived from
the log (`derived`) and may be rebuilt from it at any time; so is the search index
(`search_records`, `search_state`: `pg.search`), filled after the fact.

This module holds DDL and the meta/head readers; it never appends to the log.
"""

from __future__ import annotations

import uuid

from ..errors import TrailError

#: the PostgreSQL trail's own format version (a reader refuses one it does not know)
FORMAT_VERSION = 1
#: sequence numbers per partition of `events` (the default; a trail keeps its own in `meta`)
PARTITION_SIZE = 1_000_000
MAX_PARTITION_SIZE = 1_000_000_000_000  # far from overflowing the functions' bigint bounds
#: the tables a reader role may SELECT and what a writer role may do to each (`roles`)
LOG_TABLES = ("events", "identities", "event_ids")
SEARCH_TABLES = ("search_records", "search_state")
DERIVED_TABLES = ("traces", "trace_users", "trace_notebooks", *SEARCH_TABLES)
ALL_TABLES = ("meta", "head", *LOG_TABLES, *DERIVED_TABLES)
PARTITION_FUNCTION = "jupyter_audit_partitions"
DROP_FUNCTION = "jupyter_audit_drop_archived"
#: how far past the log's last row the partition function makes partitions (a round of
#: appends is far smaller; the writer role must not be able to make thousands of them)
AHEAD = 10_000_000

# every column the DuckDB trail has, plus session_id and the origin of a forwarded record
# (its server and sequence number there), for the collector's per-server queries
EVENTS_COLUMNS = (
    "seq",
    "kind",
    "time",
    "trace_id",
    "kernel_id",
    "session_id",
    "notebook",
    "msg_id",
    "identity_id",
    "event_id",
    "origin_server",
    "origin_seq",
    "hash",
    "leaf",
    "record",
)

# the search index (`pg.search`): one row per record holding a searched word, its words a
# tsvector (lexemes as `search.record_words` split them, no positions) under GIN, or `parts`
# rows for a record whose words outgrow one tsvector (`pg.search.tsvector_parts`); the
# trace's rows for a search within one trace; the split records' words (a query AND-s
# words across their parts: `search.tsquery_sql`); how far the log is indexed
SEARCH_DDL = [
    # the first shape (one row per record, no `parts`) is derived: dropped, built again
    """DO $$ BEGIN
        IF to_regclass('search_records') IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('search_records')
            AND attname = 'parts' AND NOT attisdropped) THEN
            DROP TABLE search_records, search_state;
        END IF;
    END $$""",
    """CREATE TABLE IF NOT EXISTS search_records (
        seq bigint NOT NULL,
        trace_id text NOT NULL,
        words tsvector NOT NULL,
        part integer NOT NULL DEFAULT 0,
        parts integer NOT NULL DEFAULT 1,
        PRIMARY KEY (seq, part)
    )""",
    "CREATE INDEX IF NOT EXISTS search_records_words ON search_records USING gin (words)",
    "CREATE INDEX IF NOT EXISTS search_records_trace ON search_records (trace_id, seq)",
    "CREATE INDEX IF NOT EXISTS search_records_split ON search_records USING gin (words) "
    "WHERE parts > 1",
    """CREATE TABLE IF NOT EXISTS search_state (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        indexed_seq bigint NOT NULL
    )""",
    "INSERT INTO search_state (indexed_seq) VALUES (0) ON CONFLICT DO NOTHING",
]

DDL = [
    "CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL)",
    """CREATE TABLE head (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        seq bigint NOT NULL,
        hash bytea NOT NULL,
        frontier text NOT NULL,
        time_us bigint NOT NULL
    )""",
    """CREATE TABLE events (
        seq bigint NOT NULL,
        kind text NOT NULL,
        time timestamp NOT NULL,
        trace_id text,
        kernel_id text,
        session_id text,
        notebook text,
        msg_id text,
        identity_id text,
        event_id text NOT NULL,
        origin_server text,
        origin_seq bigint,
        hash bytea NOT NULL,
        leaf bytea NOT NULL,
        -- the canonical bytes, exactly as hashed and signed
        record bytea NOT NULL,
        PRIMARY KEY (seq)
    ) PARTITION BY RANGE (seq)""",
    # a trace's timeline, the newest event of a kind (checkpoints, rotations), one server's
    "CREATE INDEX events_trace ON events (trace_id, seq)",
    "CREATE INDEX events_kind ON events (kind, seq)",
    "CREATE INDEX events_origin ON events (origin_server, origin_seq)",
    """CREATE TABLE identities (
        identity_id text PRIMARY KEY,
        snapshot text NOT NULL,
        username text,
        first_seq bigint NOT NULL
    )""",
    # client-chosen event ids (kernels, forwarders) for exactly-once delivery; not
    # partitioned, so the primary key covers the whole trail
    "CREATE TABLE event_ids (event_id text PRIMARY KEY, seq bigint NOT NULL)",
    """CREATE TABLE traces (
        trace_id text PRIMARY KEY,
        kernel_id text,
        notebook text,
        started_at timestamp,
        last_at timestamp,
        first_seq bigint,
        last_seq bigint,
        events bigint,
        cells bigint,
        operations bigint,
        status text,
        queries bigint DEFAULT 0,
        http bigint DEFAULT 0,
        shell bigint DEFAULT 0,
        failed_cells bigint DEFAULT 0,
        risky bigint DEFAULT 0,
        approvals bigint DEFAULT 0,
        capture_gaps bigint DEFAULT 0,
        unattributed bigint DEFAULT 0
    )""",
    "CREATE INDEX traces_last ON traces (last_seq)",
    """CREATE TABLE trace_users (
        trace_id text NOT NULL,
        username text NOT NULL,
        PRIMARY KEY (trace_id, username)
    )""",
    "CREATE INDEX trace_users_user ON trace_users (username, trace_id)",
    """CREATE TABLE trace_notebooks (
        trace_id text NOT NULL,
        notebook text NOT NULL,
        first_seq bigint NOT NULL,
        PRIMARY KEY (trace_id, notebook)
    )""",
    """CREATE FUNCTION jupyter_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'jupyter-audit: % on % refused: the audit log is append-only',
            TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
    END $$""",
    *(
        stmt
        for table in LOG_TABLES
        for stmt in (
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION jupyter_audit_append_only()",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION jupyter_audit_append_only()",
        )
    ),
]


def _partition_function(schema: str, size: int) -> str:
    """The SECURITY DEFINER function that creates the partitions covering seq 1..`upto` and
    the one after (returns the last seq they cover), `upto` at most AHEAD past the log's
    last row, never one below `meta.archived_upto` (dropped after archiving). Its
    search_path is pinned to the trail's schema: a caller cannot point it at tables of its
    own."""
    schema_literal = literal(schema)
    return f"""
CREATE OR REPLACE FUNCTION {PARTITION_FUNCTION}(upto bigint) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = {quote_ident(schema)}, pg_temp AS $$
DECLARE
    size constant bigint := {int(size)};
    last_block bigint;
    first_block bigint;
    block bigint;
BEGIN
    -- never further ahead of the log than a round can reach: a caller holding EXECUTE
    -- could otherwise make partitions by the thousand (each slows every read of events)
    IF upto > (SELECT coalesce(max(seq), 0) FROM events) + {int(AHEAD)} THEN
        RAISE EXCEPTION 'jupyter-audit: partitions up to % refused: more than % ahead of the log',
            upto, {int(AHEAD)} USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- blocks archived and dropped stay gone (nothing may be written there again)
    first_block := coalesce((SELECT value::bigint FROM meta WHERE key = 'archived_upto'), 0) / size;
    last_block := greatest(upto - 1, 0) / size + 1;
    FOR block IN first_block .. last_block LOOP
        IF to_regclass(format('%I.%I', {schema_literal}, 'events_p' || block)) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%s) TO (%s)',
                'events_p' || block, block * size + 1, (block + 1) * size + 1);
            -- row triggers are cloned from events; a TRUNCATE trigger is not
            EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT '
                'EXECUTE FUNCTION jupyter_audit_append_only()',
                'events_p' || block || '_no_truncate', 'events_p' || block);
        END IF;
    END LOOP;
    RETURN (last_block + 1) * size;
END $$"""


def _drop_function(schema: str, size: int) -> str:
    """The SECURITY DEFINER function that detaches and drops the partition starting at
    `part_first` (returns its last seq; 0 when it is gone already), for the maintenance role
    alone. It refuses unless: partitions below it are gone (the live trail stays one run of
    records), every row of it is there, at or below the head, and a `trail.archived` record
    of the log, itself at or below the head, names exactly its range and the hash of its last
    record. The signature of that record (Ed25519) cannot be checked here: the archiver
    checks it before calling, and `verify` reports any unsigned one."""
    schema_literal = literal(schema)
    return f"""
CREATE OR REPLACE FUNCTION {DROP_FUNCTION}(part_first bigint) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = {quote_ident(schema)}, pg_temp AS $$
DECLARE
    size constant bigint := {int(size)};
    block bigint;
    hi bigint;
    part text;
    head_seq bigint;
    last_hash bytea;
    rows bigint;
BEGIN
    IF part_first IS NULL OR part_first < 1 OR (part_first - 1) % size <> 0 THEN
        RAISE EXCEPTION 'jupyter-audit: #% does not start a partition (blocks of %)',
            part_first, size USING ERRCODE = 'invalid_parameter_value';
    END IF;
    block := (part_first - 1) / size;
    hi := part_first + size - 1;
    part := 'events_p' || block;
    -- one maintenance step at a time, and none while the writer's round is half done
    LOCK TABLE events IN ACCESS EXCLUSIVE MODE;
    IF to_regclass(format('%I.%I', {schema_literal}, part)) IS NULL THEN
        RETURN 0;
    END IF;
    IF EXISTS (SELECT 1 FROM events WHERE seq < part_first) THEN
        RAISE EXCEPTION 'jupyter-audit: partition % refused: records before #% are still live',
            part, part_first USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT seq INTO head_seq FROM head;
    SELECT count(*) INTO rows FROM events WHERE seq BETWEEN part_first AND hi;
    SELECT hash INTO last_hash FROM events WHERE seq = hi;
    IF rows <> size OR last_hash IS NULL OR head_seq IS NULL OR head_seq < hi THEN
        RAISE EXCEPTION 'jupyter-audit: partition % refused: records #%..#% are not all there '
            'and at or below the head', part, part_first, hi
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM events
        WHERE kind = 'trail.archived' AND seq > hi AND seq <= head_seq
          AND (convert_from(record, 'UTF8')::jsonb #>> '{{payload,first_seq}}') = part_first::text
          AND (convert_from(record, 'UTF8')::jsonb #>> '{{payload,last_seq}}') = hi::text
          AND (convert_from(record, 'UTF8')::jsonb #>> '{{payload,last_hash}}')
              = encode(last_hash, 'hex')
    ) THEN
        RAISE EXCEPTION 'jupyter-audit: partition % refused: no trail.archived record covers '
            'exactly #%..#%', part, part_first, hi USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO meta VALUES ('archived_upto', hi::text)
        ON CONFLICT (key) DO UPDATE SET value = excluded.value;
    EXECUTE format('ALTER TABLE events DETACH PARTITION %I', part);
    EXECUTE format('DROP TABLE %I', part);
    RETURN hi;
END $$"""


def _event_ids_guard(schema: str) -> list[str]:
    """The trigger that refuses a client event id naming a record archived away
    (`write.held_client_ids` holds those as duplicates: the writer role must not plant one),
    once per INSERT statement; its search_path pinned (a caller's own `meta` is not read)."""
    return [
        f"""CREATE OR REPLACE FUNCTION jupyter_audit_event_ids_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = {quote_ident(schema)}, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM added WHERE seq <= coalesce(
        (SELECT value::bigint FROM meta WHERE key = 'archived_upto'), 0)) THEN
        RAISE EXCEPTION 'jupyter-audit: a client event id naming an archived record refused'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END $$""",
        "DROP TRIGGER IF EXISTS event_ids_not_archived ON event_ids",
        "CREATE TRIGGER event_ids_not_archived AFTER INSERT ON event_ids "
        "REFERENCING NEW TABLE AS added FOR EACH STATEMENT "
        "EXECUTE FUNCTION jupyter_audit_event_ids_guard()",
    ]


def literal(text: str) -> str:
    """`text` as an SQL string literal (for statements that take no parameters)."""
    return "'" + text.replace("'", "''") + "'"


def install_functions(con, schema_name: str, size: int) -> None:
    """(Re)create the partition and drop functions in `schema_name` (the caller's
    transaction), with nobody but their owner allowed to EXECUTE them (`roles` grants), and
    the `event_ids` trigger that refuses an id naming an archived record."""
    con.execute(_partition_function(schema_name, size))
    con.execute(_drop_function(schema_name, size))
    con.execute(f"REVOKE ALL ON FUNCTION {PARTITION_FUNCTION}(bigint) FROM PUBLIC")
    con.execute(f"REVOKE ALL ON FUNCTION {DROP_FUNCTION}(bigint) FROM PUBLIC")
    for stmt in _event_ids_guard(schema_name):
        con.execute(stmt)


def check_partition_size(size: int) -> None:
    """TrailError unless `size` records a partition is one this code makes."""
    if not 2 <= int(size) <= MAX_PARTITION_SIZE:
        raise TrailError(f"partition size {size}: from 2 to {MAX_PARTITION_SIZE} records")


def partition_size(meta: dict[str, str]) -> int:
    """Sequence numbers per partition of the trail whose meta is `meta` (a trail made
    before the setting was kept has the default)."""
    raw = meta.get("partition_size", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else PARTITION_SIZE


def quote_ident(name: str) -> str:
    """`name` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def exists(con) -> bool:
    """Whether the connection's schema holds a trail (its `meta` table)."""
    row = con.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()
    return bool(row[0])


def create(con, partition_size: int = PARTITION_SIZE) -> None:
    """Create the trail's schema in the connection's current schema, in one transaction,
    unless it is there already (the caller owns what it creates). `partition_size`:
    sequence numbers per partition of `events` (kept in `meta`; 2 to MAX_PARTITION_SIZE)."""
    check_partition_size(partition_size)
    with con.transaction():
        # one creator at a time: a second waits, then finds the schema made
        con.execute("SELECT pg_advisory_xact_lock(hashtext('jupyter-audit schema'))")
        if exists(con):
            return
        (schema,) = con.execute("SELECT current_schema()").fetchone()
        if schema is None:
            raise TrailError("the PostgreSQL connection has no current schema to create in")
        for stmt in (*DDL, *SEARCH_DDL):
            con.execute(stmt)
        install_functions(con, schema, partition_size)
        con.execute(
            "INSERT INTO meta VALUES ('format_version', %s), ('trail_id', %s), "
            "('backend', 'postgresql'), ('partition_size', %s)",
            [str(FORMAT_VERSION), str(uuid.uuid4()), str(int(partition_size))],
        )
        con.execute(f"SELECT {PARTITION_FUNCTION}(1)")
        con.execute(
            "INSERT INTO head (seq, hash, frontier, time_us) VALUES (0, %s, '', 0)", [bytes(32)]
        )


def upgrade(con) -> None:
    """Bring a trail made by an earlier jupyter-audit up to this one's functions (the drop
    function, the partition function that skips dropped blocks) and search index, in one
    transaction, as its owner (`roles.setup` runs it)."""
    with con.transaction():
        con.execute("SELECT pg_advisory_xact_lock(hashtext('jupyter-audit schema'))")
        (schema_name,) = con.execute("SELECT current_schema()").fetchone()
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        install_functions(con, schema_name, partition_size(meta))
        for stmt in SEARCH_DDL:
            con.execute(stmt)


def has_search(con) -> bool:
    """Whether the trail has its search index's tables, of this shape (one made before them
    has not, nor one of the first shape, until `jupyter audit pg-setup` upgrades it, or a
    store whose role owns the schema opens it)."""
    row = con.execute(
        "SELECT to_regclass('search_state') IS NOT NULL AND EXISTS (SELECT 1 FROM pg_attribute"
        " WHERE attrelid = to_regclass('search_records') AND attname = 'parts'"
        " AND NOT attisdropped)"
    ).fetchone()
    return bool(row[0])


def add_search(con) -> bool:
    """Create the search index's tables if missing, when the connection's role may (it owns
    the schema); whether the trail has them afterwards."""
    import psycopg

    if has_search(con):
        return True
    try:
        with con.transaction():
            con.execute("SELECT pg_advisory_xact_lock(hashtext('jupyter-audit schema'))")
            for stmt in SEARCH_DDL:
                con.execute(stmt)
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def read_meta(con) -> dict[str, str]:
    """The trail's meta and high-water mark, as the DuckDB trail's meta names them
    (`format_version`, `trail_id`, `last_seq`, `last_hash`, `frontier`, `last_time_us`)."""
    if not exists(con):
        raise TrailError("not a jupyter-audit trail (no meta table in this schema)")
    meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
    row = con.execute("SELECT seq, hash, frontier, time_us FROM head").fetchone()
    if row is not None:
        meta.update(
            last_seq=str(row[0]),
            last_hash=bytes(row[1]).hex(),
            frontier=row[2],
            last_time_us=str(row[3]),
        )
    return meta


def check_version(meta: dict[str, str]) -> int:
    """The trail's format version; TrailError for one this code does not know."""
    raw = meta.get("format_version")
    if raw is None or meta.get("backend") != "postgresql":
        raise TrailError("not a jupyter-audit PostgreSQL trail (no format version)")
    if not raw.isdigit() or not 1 <= int(raw) <= FORMAT_VERSION:
        raise TrailError(
            f"unknown trail format version {raw!r} (this jupyter-audit reads PostgreSQL trails "
            f"up to {FORMAT_VERSION}); upgrade jupyter-audit to read it"
        )
    return int(raw)


def ensure_partitions(con, upto: int) -> int:
    """Make sure partitions cover seq 1..`upto` and the block after; the last seq covered."""
    (covered,) = con.execute(f"SELECT {PARTITION_FUNCTION}(%s)", [int(upto)]).fetchone()
    return int(covered)
