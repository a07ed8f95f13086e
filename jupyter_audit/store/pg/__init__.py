"""The PostgreSQL trail store (the collector's system of record): `PgStore`.

`schema` (tables, partitions, the append-only trigger), `roles` (writer, reader and
maintenance roles), `write` (a sealed batch in one transaction), `derived` (the traces
projection from the log), `verify` (one snapshot), `connection` (psycopg, and the adapter
that runs the DuckDB trail's read modules here), `store` (`PgStore`). psycopg is imported by
this package only (the `collector` extra), when `PgStore` or a module that connects is first
imported: `schema` and the role names of `roles` import without it, and nothing outside this
package imports it at module level, so a DuckDB-only install never needs psycopg.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import PgStore

__all__ = ["PgStore"]


def __getattr__(name: str):
    if name == "PgStore":
        from .store import PgStore

        return PgStore
    raise AttributeError(name)
