"""SQL capture: one ``op.sql`` event per statement executed from notebook code, reported as
it is (the server masks it). Installs the driver modules and holds no capture of its own.

kernel/: runs inside user kernels; never opens the trail file, never trusts its own identity
claims. Drivers (``sqlite``, ``duck``, ``psycopg3``, ``psycopg2_``, ``alchemy``, ``dbapi``
for :func:`wrap_connection`) import the shared ``encoding`` (payload rendering),
``reporting`` (the general path) and ``raw`` (the fast path's record), never each other.
"""

from __future__ import annotations

from .alchemy import patch_sqlalchemy
from .dbapi import wrap_connection
from .duck import patch_duckdb
from .encoding import STATEMENT_CAP, params_json
from .psycopg2_ import patch_psycopg2
from .psycopg3 import patch_psycopg
from .reporting import IN_SQL
from .sqlite import patch_sqlite3

__all__ = ["IN_SQL", "STATEMENT_CAP", "install", "params_json", "wrap_connection"]


def install(hooks, patcher) -> None:
    hooks.register("sqlite3", lambda m: patch_sqlite3(m, patcher))
    hooks.register("duckdb", lambda m: patch_duckdb(m, patcher))
    hooks.register("psycopg", lambda m: patch_psycopg(m, patcher))
    hooks.register("psycopg2", lambda m: patch_psycopg2(m, patcher))
    hooks.register("sqlalchemy", lambda m: patch_sqlalchemy(m, patcher))
