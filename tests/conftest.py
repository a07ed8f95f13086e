"""Fixtures for every test: a trail directory and real Writers on it. Helpers the tests
share are in tests/helpers."""

from pathlib import Path

import pytest

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def trail_dir(tmp_path) -> Path:
    d = tmp_path / "audit"
    d.mkdir()
    return d


@pytest.fixture
def make_writer(trail_dir):
    """Writers on a real DuckDB file in a temporary directory, with the real masking
    engine and a real signing key; closed at the end of the test."""
    from jupyter_audit.masking import MaskingEngine, load_or_create_key
    from jupyter_audit.store.signing import SigningKey
    from jupyter_audit.store.writer import Writer

    opened = []

    def make(**kwargs):
        masker = MaskingEngine(load_or_create_key(trail_dir / "masking.key"))
        key = SigningKey.load_or_create(trail_dir / "signing-key.pem")
        w = Writer(trail_dir / "trail.duckdb", masker, key, **kwargs).open()
        opened.append(w)
        return w

    yield make
    for w in opened:
        w.close()


@pytest.fixture
def writer_at(tmp_path):
    """Real Writers, each on a trail in a directory of its own under the test's temporary
    directory (e.g. a server's trail and a collector's), with their own keys; closed at the
    end of the test."""
    from jupyter_audit.masking import MaskingEngine, load_or_create_key
    from jupyter_audit.store.signing import SigningKey
    from jupyter_audit.store.writer import Writer

    opened = []

    def make(name: str, **kwargs):
        d = tmp_path / name
        d.mkdir(exist_ok=True)
        masker = MaskingEngine(load_or_create_key(d / "masking.key"))
        key = SigningKey.load_or_create(d / "signing-key.pem")
        w = Writer(d / "trail.duckdb", masker, key, **kwargs).open()
        opened.append(w)
        return w

    yield make
    for w in opened:
        w.close()


@pytest.fixture
def issuer():
    """A real OIDC issuer over HTTP whose keys the test controls (helpers/oidc.py)."""
    from helpers.oidc import KeyIssuer

    i = KeyIssuer()
    yield i
    i.stop()


@pytest.fixture
def pg(tmp_path):
    """A PostgreSQL trail backend (`helpers.stores.PgBackend`) in a database of this test's
    own (JUPYTER_AUDIT_TEST_PG_DSN; skipped without it), its stores closed afterwards."""
    from helpers.stores import PgBackend, fresh_database

    with fresh_database() as dsn:
        b = PgBackend(tmp_path, dsn)
        try:
            yield b
        finally:
            b.close_all()


@pytest.fixture
def pg_role_names(pg):
    """Names for the trail's three roles, of this test's own (roles are per cluster), each
    dropped afterwards with what it owns."""
    import uuid

    import psycopg
    from helpers.stores import dsn_for

    suffix = uuid.uuid4().hex[:8]
    names = {k: f"ja_{k}_{suffix}" for k in ("writer", "reader", "maintenance")}
    yield names
    with psycopg.connect(pg.dsn, autocommit=True) as con:
        for name in names.values():
            con.execute(f'DROP OWNED BY "{name}"')
    with psycopg.connect(dsn_for(pg.dsn, "postgres"), autocommit=True) as con:
        for name in names.values():
            con.execute(f'DROP ROLE IF EXISTS "{name}"')
