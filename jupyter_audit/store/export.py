"""Exports (jsonl, csv, parquet) and evidence bundles with RFC 6962 inclusion proofs.

A bundle carries the exported records, the signed checkpoint that covers them and one audit
path per record, so a reader can check each record against the signed Merkle root without
seeing any other record of the trail. It proves inclusion, not completeness. This module
works on records already read from a trail: it must never open a trail nor import the writer.
"""

from __future__ import annotations

import csv
import json
import os
import re
from hashlib import sha256
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .canonical import jcs
from .checkpoints import checkpoint_message
from .merkle import inclusion_proofs, root_from_inclusion
from .signing import key_id, load_public, verify_signature

FORMATS = ("jsonl", "csv", "parquet")
BUNDLE_FORMAT = "jupyter-audit-bundle/1"
CSV_COLUMNS = (
    "seq",
    "kind",
    "time",
    "prev_hash",
    "hash",
    "identity",
    "trace_id",
    "kernel_id",
    "session_id",
    "notebook",
    "msg_id",
    "op_index",
    "kernel_time",
    "event_id",
    "identity_id",
    "flags",
    "payload",
    "capped",
    "withheld",
    "schema",
    "v",
)


class ExportError(Exception):
    pass


def bundle_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out if out.name.endswith(".bundle.json") else out.with_name(out.name + ".bundle.json")


def _flat(rec: dict, col: str) -> str:
    v = rec.get(col)
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False, sort_keys=True)
    return "" if v is None else str(v)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def csv_cell(text: str) -> str:
    """A CSV cell that spreadsheet tools will not run as a formula (OWASP's CSV injection
    advice): text starting with =, +, -, @, tab or CR gets a leading apostrophe, except a
    plain number. JSONL and Parquet keep every value as it is."""
    if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def write_records(records: list[dict], fmt: str, out: Path) -> None:
    tmp = out.with_name(out.name + ".tmp")
    if fmt == "jsonl":
        with open(tmp, "w", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps(rec, ensure_ascii=False, sort_keys=True))
                f.write("\n")
    elif fmt == "csv":
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(CSV_COLUMNS)
            for rec in records:
                w.writerow([csv_cell(_flat(rec, c)) for c in CSV_COLUMNS])
    elif fmt == "parquet":
        cols = {c: [_flat(r, c) for r in records] for c in CSV_COLUMNS}
        cols["seq"] = [r["seq"] for r in records]
        table = pa.table({c: pa.array(v) for c, v in cols.items()})
        pq.write_table(table, tmp)
    else:
        raise ExportError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    os.replace(tmp, out)


def make_bundle(records: list[dict], checkpoint: dict | None, leaves, known=None) -> dict:
    """Bundle for `records`; `leaves` are the trail's leaves 1..checkpoint.tree_size (those of
    archived records may be missing when `known` holds their subtrees: `inclusion_proofs`)."""
    size = checkpoint["tree_size"] if checkpoint else 0
    covered = [r for r in records if r["seq"] <= size]
    indices = [r["seq"] - 1 for r in covered]
    proofs = inclusion_proofs(leaves, indices, known) if covered else {}
    return {
        "format": BUNDLE_FORMAT,
        "checkpoint": checkpoint,
        "records": records,
        "proofs": {str(r["seq"]): [h.hex() for h in proofs[r["seq"] - 1]] for r in covered},
        "uncovered": [r["seq"] for r in records if r["seq"] > size],
        "note": "proves that each record is in the signed trail; not that the export is complete",
    }


def record_canonical(rec: dict) -> bytes:
    return jcs({k: v for k, v in rec.items() if k not in ("hash", "identity")})


class BundleResult:
    def __init__(self):
        self.ok = True
        self.problems: list[str] = []
        self.records = 0
        self.checkpoint: dict | None = None
        self.uncovered: list[int] = []

    def fail(self, msg: str) -> None:
        self.ok = False
        self.problems.append(msg)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "records": self.records,
            "checkpoint": self.checkpoint,
            "uncovered": self.uncovered,
            "problems": self.problems,
            "scope": "inclusion, not completeness",
        }


def load_bundle(path: str | os.PathLike) -> dict:
    p = Path(path)
    if not p.name.endswith(".bundle.json") and bundle_path(p).exists():
        p = bundle_path(p)
    try:
        data = json.loads(p.read_text("utf-8"))
    except FileNotFoundError:
        raise ExportError(f"no bundle at {p}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ExportError(f"{p} is not a bundle: {e}") from None
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise ExportError(f"{p} is not a {BUNDLE_FORMAT} bundle")
    return data


def verify_bundle(data: dict, trusted_keys=None) -> BundleResult:
    res = BundleResult()
    cp = data.get("checkpoint")
    records = data.get("records") or []
    res.uncovered = list(data.get("uncovered") or [])
    if not isinstance(cp, dict):
        res.fail("bundle has no signed checkpoint")
        return res
    try:
        pub = load_public(cp["public_key"])
        msg = checkpoint_message(cp)
        root = bytes.fromhex(cp["merkle_root"])
        size = int(cp["tree_size"])
    except Exception as e:  # noqa: BLE001
        res.fail(f"checkpoint unreadable: {e}")
        return res
    if trusted_keys and pub not in set(trusted_keys):
        res.fail(f"checkpoint signed by key {key_id(pub)}, not the pinned key")
    if key_id(pub) != cp.get("key_id") or not verify_signature(pub, cp.get("signature", ""), msg):
        res.fail(f"checkpoint signature at #{cp.get('seq')} does not verify")
    res.checkpoint = {k: cp.get(k) for k in ("seq", "hash", "merkle_root", "time", "key_id")}
    proofs = data.get("proofs") or {}
    uncovered = set(res.uncovered)
    early = sorted(s for s in uncovered if not isinstance(s, int) or s <= size)
    if early:
        res.fail(f"records {early[:5]} are listed as uncovered but the checkpoint covers them")
    for rec in records:
        res.records += 1
        try:
            seq = rec["seq"]
            if seq in uncovered:
                continue  # newer than the checkpoint: reported, not proven
            canon = record_canonical(rec)
            if sha256(bytes.fromhex(rec["prev_hash"]) + canon).hexdigest() != rec["hash"]:
                res.fail(f"record #{seq}: content does not match its hash")
                continue
            ident = rec.get("identity")
            if rec.get("identity_id") is not None:
                if ident is None or sha256(jcs(ident)).hexdigest() != rec["identity_id"]:
                    res.fail(f"record #{seq}: identity snapshot does not match")
                    continue
            proof = [bytes.fromhex(h) for h in proofs[str(seq)]]
            leaf = sha256(b"\x00" + canon).digest()
            if root_from_inclusion(leaf, seq - 1, size, proof) != root:
                res.fail(f"record #{seq}: not included under the signed Merkle root")
        except KeyError as e:
            res.fail(f"record #{rec.get('seq', '?')}: missing {e}")
        except (ValueError, TypeError, AttributeError) as e:
            res.fail(f"record #{rec.get('seq', '?') if isinstance(rec, dict) else '?'}: {e}")
    return res
