"""An archived PostgreSQL trail for tests (tests/test_pg_archive.py, test_pg_archive_read.py):
a trail made by pg-setup with small partitions and its three roles' DSNs, the store opened as
the writer, an archive run that drops what it archived, and an archive segment edited the way
someone with write access to the archive would."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jupyter_audit.identity.snapshot import system_identity
from jupyter_audit.store.archive import decode_segment, encode_segment
from jupyter_audit.store.archive_target import open_target
from jupyter_audit.store.archiver import run_archive
from jupyter_audit.store.merkle import MerkleFrontier

from .stores import role_dsn

SIZE = 100  # records a partition
LATER = datetime.now(UTC) + timedelta(days=1)  # every record is older than this


def setup_trail(pg, role_names: dict, tmp_path: Path):
    """`pg` (the `pg` fixture) made a trail by pg-setup with partitions of SIZE records;
    `pg.writer`, `pg.reader`, `pg.maintenance`: its roles' DSNs, `pg.dsn` (and `pg.admin`)
    the superuser's, `pg.archive`: where `archive` writes."""
    from jupyter_audit.store.pg import roles

    roles.setup(pg.dsn, partition_size=SIZE, **role_names)
    pg.admin = pg.dsn
    pg.writer = role_dsn(pg, role_names["writer"])
    pg.reader = role_dsn(pg, role_names["reader"])
    pg.maintenance = role_dsn(pg, role_names["maintenance"])
    pg.archive = tmp_path / "archive"
    return pg


def open_store(pg, **kwargs):
    pg.dsn, admin = pg.writer, pg.dsn
    try:
        kwargs.setdefault("maintenance_dsn", pg.maintenance)
        return pg.make(checkpoint_every=40, **kwargs)
    finally:
        pg.dsn = admin


def archive(store, pg, retention: timedelta | None = timedelta(0)) -> dict:
    return run_archive(
        store,
        open_target(str(pg.archive), None, create=True),
        archive_after=timedelta(0),
        retention=retention,
        now=LATER,
        identity=system_identity(),
    )


def live_range(pg) -> tuple[int, int]:
    return tuple(pg.sql("SELECT min(seq), max(seq) FROM events")[0])


def partitions(pg) -> list[str]:
    rows = pg.sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'events'::regclass ORDER BY c.relname"
    )
    return sorted(r[0] for r in rows)


def archived_payloads(pg) -> list[dict]:
    rows = pg.sql("SELECT record FROM events WHERE kind = 'trail.archived' ORDER BY seq")
    return [json.loads(bytes(r[0]))["payload"] for r in rows]


def edit_segment(seg: Path, index: int) -> None:
    """Edit record `index` of an archived segment and write it back as a well-formed
    segment with the metadata it had (what someone with write access to the archive does)."""
    import pyarrow as pa

    seg.chmod(0o644)
    table, meta = decode_segment(seg.read_bytes())
    records = table.column("record").to_pylist()
    records[index] = records[index].replace(b"loans", b"LOANZ")
    fb = meta["frontier_before"]
    seg.write_bytes(
        encode_segment(
            pa.table(
                [table.column("seq"), pa.array(records, pa.binary())], names=["seq", "record"]
            ),
            trail_id=meta["trail_id"],
            prev_hash=bytes.fromhex(meta["prev_hash"]),
            last_hash=bytes.fromhex(meta["last_hash"]),
            frontier=MerkleFrontier.from_hex(fb["size"], fb["hashes"]),
            checkpoint=meta["checkpoint"],
            identities=meta["identities"],
        )
    )
