"""One façade over an open trail for the REST API and the CLI's `--db` mode: verify,
export with bundle, trace listings. It never writes (the Writer does) and never imports the
writer."""

from __future__ import annotations

import json
from pathlib import Path

from . import queries
from .chain import leaves
from .errors import TrailError
from .export import bundle_path, make_bundle, write_records
from .merkle import MerkleFrontier
from .verify import VerifyResult, verify_connection


def latest_checkpoint(cur) -> dict | None:
    return latest_payload(cur, "checkpoint")


def latest_payload(cur, kind: str) -> dict | None:
    """The payload of the newest event of `kind`, decoded from its signed record."""
    row = cur.execute(
        "SELECT record FROM events WHERE kind = ? ORDER BY seq DESC LIMIT 1", [kind]
    ).fetchone()
    if row is None:
        return None
    return json.loads(row[0])["payload"]


def verify(
    cur,
    meta: dict,
    checkpoint_files,
    trusted_keys=None,
    deep=False,
    independent_copy=False,
    file_lines=None,
) -> VerifyResult:
    """`file_lines`: the checkpoint files read before the snapshot began, so that none can
    name a record it lacks (`verify.collect_checkpoints`)."""
    return verify_connection(
        cur,
        meta,
        checkpoint_files=checkpoint_files,
        trusted_keys=trusted_keys,
        deep=deep,
        independent_copy=independent_copy,
        file_lines=file_lines,
    )


def build_bundle(cur, **filters) -> dict:
    """Every record matching `filters`, the newest signed checkpoint and inclusion proofs."""
    where, params = queries.export_filter(**filters)
    records = list(queries.iter_export(cur, where, params))
    cp = latest_checkpoint(cur)
    covered: list[bytes] | _AfterArchive = []
    known = None
    if cp is not None and records:
        covered = leaves(cur, cp["tree_size"])
        if len(covered) < cp["tree_size"]:  # records archived away (docs/archive.md)
            covered, known = _after_archive(cur, covered, cp["tree_size"])
    return make_bundle(records, cp, covered, known)


class _AfterArchive:
    """The leaves 1..size of a trail whose first `archived` records are in an archive: only
    the live ones are at hand (inclusion proofs take the archived part's subtrees)."""

    def __init__(self, archived: int, live: list[bytes]):
        self.archived, self.live = archived, live

    def __len__(self) -> int:
        return self.archived + len(self.live)

    def __getitem__(self, i: int) -> bytes:
        if i < self.archived:
            raise IndexError(f"leaf {i} is archived")
        return self.live[i - self.archived]


def _after_archive(cur, live: list[bytes], size: int):
    """(leaves, known subtrees) for proofs in a trail whose first records were archived:
    the Merkle frontier the `trail.archived` event ending before them recorded."""
    archived = size - len(live)
    payload = next(
        (
            p
            for (rec,) in cur.execute(
                "SELECT record FROM events WHERE kind = 'trail.archived' ORDER BY seq DESC"
            ).fetchall()
            if (p := json.loads(bytes(rec))["payload"])["last_seq"] == archived
        ),
        None,
    )
    if payload is None:
        raise TrailError(f"records #1..#{archived} are missing and no trail.archived covers them")
    frontier = MerkleFrontier.from_hex(archived, payload["frontier"])
    return _AfterArchive(archived, live), frontier.blocks()


def write_export(bundle: dict, fmt: str, out: Path) -> dict:
    """Write the bundle's records to `out` in `fmt` and the bundle beside it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_records(bundle["records"], fmt, out)
    bpath = bundle_path(out)
    tmp = bpath.with_name(bpath.name + ".tmp")
    tmp.write_text(json.dumps(bundle, ensure_ascii=False, sort_keys=True), "utf-8")
    tmp.replace(bpath)
    cp = bundle.get("checkpoint")
    return {
        "records": len(bundle["records"]),
        "output": str(out),
        "bundle": str(bpath),
        "checkpoint": None if cp is None else {k: cp[k] for k in ("seq", "merkle_root", "time")},
        "uncovered": bundle["uncovered"],
    }
