"""The PostgreSQL trail store (the collector's system of record): `PgStore`.

`schema` (tables, partitions, the append-only trigger), `roles` (writer, reader and
maintenance roles), `write` (a sealed batch in one transaction), `derived` (the traces
projection from the log), `verify` (one snapshot), `connection` (psycopg, and the adapter
that runs the DuckDB trail's read modules here), `store` (`PgStore`). psycopg is imported by
this package only (the `collector` extra); nothing outside it imports this package at module
level, so a DuckDB-only install never needs psycopg.
"""

from .store import PgStore

__all__ = ["PgStore"]
