"""Checkpoint formats: what a signed checkpoint covers, the checkpoint files, key rotations.

A signed checkpoint vouches for the chain up to one record: its sequence number, chain hash,
Merkle root and tree size, time and trail id, signed (Ed25519) over their JCS bytes
(`checkpoint_message`). The Writer stores each one in the trail (a `checkpoint` event) and
appends it, one JCS line each, to plain files beside the trail and away from it
(`default_checkpoint_path`, a mirror), so that cutting the trail's tail shows. A key rotation
signs `rotation_message` with the old key; an archive run signs each `trail.archived` payload
(`archived_message`) with the current key.

The Writer signs and writes checkpoints; `verify` and `export` read and check them, through
this module only. It holds formats and file lines, never a trail: it must never open a
database nor import the writer, verify or export (they all import it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from .canonical import iso_time, jcs
from .signing import SigningKey, public_b64

#: the fields of a checkpoint its signature covers
SIGNED_FIELDS = ("seq", "hash", "merkle_root", "tree_size", "time", "trail_id")


def checkpoint_message(body: dict) -> bytes:
    """The bytes a checkpoint signature covers."""
    return jcs({k: body[k] for k in SIGNED_FIELDS})


def rotation_message(trail_id: str, new_public: str, new_key_id: str) -> bytes:
    """The bytes the old key signs in a `key.rotated` event."""
    return jcs({"trail_id": trail_id, "new_public_key": new_public, "new_key_id": new_key_id})


def archived_message(payload: dict) -> bytes:
    """The bytes the trail's key signs in a `trail.archived` event: its whole payload
    (trail id and key id included) but the signature."""
    return jcs({k: v for k, v in payload.items() if k != "signature"})


def sign_checkpoint(
    key: SigningKey,
    *,
    trail_id: str,
    seq: int,
    last_hash: bytes,
    merkle_root: bytes,
    tree_size: int,
    time_us: int,
) -> dict:
    """A checkpoint body for the chain at `seq`, signed by `key`."""
    body = {
        "seq": seq,
        "hash": last_hash.hex(),
        "merkle_root": merkle_root.hex(),
        "tree_size": tree_size,
        "time": iso_time(time_us),
        "trail_id": trail_id,
        "key_id": key.key_id,
        "public_key": public_b64(key.public),
    }
    body["signature"] = key.sign(checkpoint_message(body))
    return body


def default_checkpoint_path(db_path: Path) -> Path:
    """The checkpoint file beside a trail file."""
    return db_path.with_name(db_path.name + ".checkpoints")


def append_checkpoint_line(path: Path, body: dict) -> None:
    """Append one checkpoint to a checkpoint file, synced to disk (raises OSError)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = jcs(body) + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_checkpoint_files(
    paths: Iterable[str | os.PathLike],
) -> tuple[list[dict], list[str]]:
    """(checkpoints, unreadable lines) of the checkpoint files that exist among `paths`. Each
    checkpoint gets `_source` ("path:line"); each unreadable line is named the same way."""
    out, bad = [], []
    for path in paths:
        path = Path(path)
        if not path.exists():
            continue
        for n, line in enumerate(path.read_text("utf-8", "replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                cp = json.loads(line)
                if not isinstance(cp, dict):
                    raise ValueError("not an object")
                cp["_source"] = f"{path}:{n}"
                out.append(cp)
            except (ValueError, RecursionError):  # not JSON, or nested past any checkpoint's depth
                bad.append(f"{path}:{n}")
    return out, bad
