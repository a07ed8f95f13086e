"""Trail stores of every backend for the shared store tests (tests/test_store_contract.py):
a DuckDB file or a fresh PostgreSQL database, opened with the real masking engine and a real
signing key, plus what a test needs to reach behind the store's back (tamper, count rows,
verify from outside). PostgreSQL needs JUPYTER_AUDIT_TEST_PG_DSN (a superuser DSN; each test
gets a database of its own, dropped at the end); without it those tests skip."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

PG_ENV = "JUPYTER_AUDIT_TEST_PG_DSN"


def pg_admin_dsn() -> str:
    dsn = os.environ.get(PG_ENV)
    if not dsn:
        pytest.skip(f"PostgreSQL tests need {PG_ENV}")
    return dsn


def dsn_for(admin: str, database: str, user: str | None = None) -> str:
    """`admin`'s DSN pointed at `database` (and connecting as `user`)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(admin)
    params["dbname"] = database
    if user is not None:
        params["user"] = user
        params.pop("password", None)
    return make_conninfo(**params)


def role_dsn(pg, name: str) -> str:
    """The DSN of `pg`'s database, connecting as the role `name` (trust auth in tests)."""
    from psycopg.conninfo import conninfo_to_dict

    return dsn_for(pg.dsn, conninfo_to_dict(pg.dsn)["dbname"], user=name)


def as_role(pg, name: str):
    """A connection (autocommit) to `pg`'s database as the role `name`."""
    import psycopg

    return psycopg.connect(role_dsn(pg, name), autocommit=True)


def refused() -> tuple:
    """What PostgreSQL raises when a role may not do a thing (a grant missing, or the
    append-only trigger)."""
    import psycopg

    return (psycopg.errors.InsufficientPrivilege, psycopg.errors.RaiseException)


@contextmanager
def fresh_database():
    """A new PostgreSQL database for one test: its superuser DSN; dropped afterwards."""
    import psycopg

    admin = pg_admin_dsn()
    name = "ja_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    try:
        yield dsn_for(admin, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Backend:
    """One backend's trail in a test: `make()` opens a store on it (again after close)."""

    name = ""

    def __init__(self, d: Path):
        from jupyter_audit.masking import MaskingEngine, load_or_create_key
        from jupyter_audit.store.signing import SigningKey

        self.dir = d
        self.masker = MaskingEngine(load_or_create_key(d / "masking.key"))
        self.key = SigningKey.load_or_create(d / "signing-key.pem")
        self.opened: list = []

    def make(self, **kwargs):
        store = self.new(**kwargs).open()
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for s in self.opened:
            s.close()

    def sql(self, statement: str, params=()) -> list:
        """Run SQL behind the store's back (the store closed, for DuckDB); rows."""
        raise NotImplementedError

    def verify(self, **kwargs):
        """Verify from outside the store (it closed), as `jupyter audit verify` would."""
        raise NotImplementedError


class DuckDBBackend(Backend):
    name = "duckdb"

    @property
    def path(self) -> Path:
        return self.dir / "trail.duckdb"

    @property
    def checkpoints(self) -> Path:
        return self.dir / "trail.duckdb.checkpoints"

    def new(self, **kwargs):
        from jupyter_audit.store.writer import Writer

        return Writer(self.path, self.masker, self.key, **kwargs)

    def spec(self) -> str:
        return f"duckdb:{self.path}"

    def sql(self, statement: str, params=()) -> list:
        import duckdb

        con = duckdb.connect(str(self.path))
        try:
            cur = con.execute(statement.replace("%s", "?"), list(params))
            return cur.fetchall() if cur.description else []
        finally:
            con.close()

    def tamper(self, statement: str, params=()) -> None:
        self.sql(statement, params)

    def verify(self, **kwargs):
        from jupyter_audit.store.verify import verify_path

        return verify_path(self.path, **kwargs)


class PgBackend(Backend):
    name = "pg"

    def __init__(self, d: Path, dsn: str):
        super().__init__(d)
        self.dsn = dsn
        self.checkpoints = d / "collector.checkpoints"

    def new(self, **kwargs):
        from jupyter_audit.store.pg import PgStore

        kwargs.setdefault("checkpoint_path", self.checkpoints)
        return PgStore(self.dsn, self.masker, self.key, **kwargs)

    def spec(self) -> str:
        return f"pg:{self.dsn}"

    def sql(self, statement: str, params=()) -> list:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as con:
            cur = con.execute(statement, list(params))
            return cur.fetchall() if cur.description else []

    def tamper(self, statement: str, params=()) -> None:
        """As a superuser with the append-only trigger off (what no other role can do)."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as con:
            con.execute("SET session_replication_role = replica")
            con.execute(statement, list(params))

    def verify(self, checkpoint_files=None, **kwargs):
        from jupyter_audit.store.pg.verify import verify_dsn

        files = [self.checkpoints, *(checkpoint_files or [])]
        return verify_dsn(self.dsn, checkpoint_files=files, **kwargs)


@contextmanager
def backend(name: str, d: Path):
    if name == "duckdb":
        b: Backend = DuckDBBackend(d)
        try:
            yield b
        finally:
            b.close_all()
        return
    with fresh_database() as dsn:
        b = PgBackend(d, dsn)
        try:
            yield b
        finally:
            b.close_all()


def open_spec(spec: str, d: Path, **kwargs):
    """A store opened from `Backend.spec()` (for a writer in a subprocess)."""
    kind, _, where = spec.partition(":")
    b: Backend = DuckDBBackend(d) if kind == "duckdb" else PgBackend(d, where)
    return b.new(**kwargs).open()
