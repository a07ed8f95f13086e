"""The database roles of a PostgreSQL trail: who may append, who may read, who may archive.

`setup` (run once by an administrator, `jupyter audit pg-setup`) creates the trail's schema
if missing and three roles:

- the **writer** (the collector): INSERT and SELECT on the log (`events`, `identities`,
  `event_ids`), SELECT and UPDATE on the high-water mark `head`, what it needs on the
  derived tables (they are recounted from the log), EXECUTE on the partition function.
  Never UPDATE, DELETE or TRUNCATE on the log, and it owns nothing, so it cannot ALTER or
  DROP a table or a partition either;
- the **reader** (auditors, `verify`/`export`/`show --pg`): SELECT only;
- the **maintenance** role: SELECT, and EXECUTE on `jupyter_audit_drop_archived` (`schema`):
  it detaches and drops a partition of the log whose archive copy the log records as
  verified (`trail.archived`), the one exception to INSERT-only. It owns nothing and holds
  no UPDATE, DELETE, TRUNCATE or INSERT: it cannot edit a row, add one, or drop a partition
  the function refuses (unarchived, partly archived, or not the oldest).

The tables belong to the role that ran `setup` (or created the schema); the append-only
trigger (`schema`) refuses UPDATE, DELETE and TRUNCATE of the log even to that owner. A
superuser can still switch the trigger off and edit: that is what `verify` and the signed
checkpoints kept outside the database are for (docs/threat-model.md).
"""

from __future__ import annotations

from . import schema
from .schema import literal, quote_ident

WRITER = "jupyter_audit_collector"
READER = "jupyter_audit_auditor"
MAINTENANCE = "jupyter_audit_maintenance"


def grants(where: str, writer: str, reader: str, maintenance: str) -> list[str]:
    """The GRANT statements of the three roles on the trail in schema `where`."""
    w, r, m = (quote_ident(x) for x in (writer, reader, maintenance))
    return [
        f"GRANT USAGE ON SCHEMA {quote_ident(where)} TO {w}, {r}, {m}",
        f"GRANT SELECT, INSERT ON {', '.join(schema.LOG_TABLES)} TO {w}",
        f"GRANT SELECT ON meta TO {w}",
        f"GRANT SELECT, UPDATE ON head TO {w}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(schema.DERIVED_TABLES)} TO {w}",
        f"GRANT EXECUTE ON FUNCTION {schema.PARTITION_FUNCTION}(bigint) TO {w}",
        f"GRANT SELECT ON {', '.join(schema.ALL_TABLES)} TO {r}, {m}",
        f"GRANT EXECUTE ON FUNCTION {schema.DROP_FUNCTION}(bigint) TO {m}",
    ]


def setup(
    dsn_admin: str,
    writer: str = WRITER,
    reader: str = READER,
    maintenance: str = MAINTENANCE,
    passwords: dict[str, str] | None = None,
    partition_size: int = schema.PARTITION_SIZE,
) -> None:
    """Create the trail's schema (if missing) at `dsn_admin` (a role that may create roles
    and tables) and the three roles with their grants (a role that exists keeps its
    attributes; its grants are made again); a schema made by an earlier version gets this
    version's functions. `passwords`: role name -> password to set (sent only as its SCRAM
    verifier, in the server's `password_encryption`). `partition_size`: records a partition
    of the log, for a schema made now (an existing one keeps its own, in `meta`)."""
    names = {writer, reader, maintenance}
    if len(names) != 3:
        raise ValueError("the writer, reader and maintenance roles must be three different roles")
    schema.check_partition_size(partition_size)
    from .connection import connect  # psycopg: only when a setup runs

    con = connect(dsn_admin, autocommit=True, application="jupyter-audit setup")
    try:
        if not schema.exists(con):
            schema.create(con, partition_size)
        else:
            schema.upgrade(con)
        with con.transaction():
            for name in (writer, reader, maintenance):
                row = con.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone()
                if row is None:
                    con.execute(f"CREATE ROLE {quote_ident(name)} LOGIN NOINHERIT")
                password = (passwords or {}).get(name)
                if password:
                    # hashed here (as psql's \password does): the statement, which the
                    # server may log, never holds the password itself
                    (algorithm,) = con.execute("SHOW password_encryption").fetchone()
                    verifier = con.pgconn.encrypt_password(
                        password.encode(), name.encode(), algorithm.encode()
                    )
                    con.execute(
                        f"ALTER ROLE {quote_ident(name)} PASSWORD {literal(verifier.decode())}"
                    )
            (here,) = con.execute("SELECT current_schema()").fetchone()
            for stmt in grants(here, writer, reader, maintenance):
                con.execute(stmt)
    finally:
        con.close()
