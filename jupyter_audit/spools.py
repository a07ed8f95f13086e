"""Ingest spool files that kernels left while no server could take their events.

A kernel whose server went away (killed, restarted) writes its events to
`audit-spool-<kernel id>.jsonl` (0600) in the runtime directory. A server ingests the spools
of kernels it does not manage itself (its own kernels replay their spools themselves):
at start and then periodically. Each file is renamed before it is read, so a kernel that is
still alive starts a new file; events are stored exactly once (kernel event ids), attributed
by the cells the trail holds, and flagged `spooled`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from .events import EventValidationError
from .identity import system_identity
from .ingest import Attributor

log = logging.getLogger("jupyter_audit.spools")
PREFIX, SUFFIX = "audit-spool-", ".jsonl"


def spool_files(runtime_dir: str | Path, managed: set[str]) -> list[tuple[str, Path]]:
    out = []
    for path in sorted(Path(runtime_dir).glob(f"{PREFIX}*{SUFFIX}")):
        kernel_id = path.name[len(PREFIX) : -len(SUFFIX)]
        if kernel_id not in managed:
            out.append((kernel_id, path))
    return out


def ingest_spools(audit, runtime_dir: str | Path, managed: set[str]) -> int:
    """Ingest every foreign spool file; returns the number of events stored."""
    stored = 0
    for kernel_id, path in spool_files(runtime_dir, managed):
        taken = path.with_name(f"{path.name}.ingesting-{os.getpid()}")
        try:
            os.rename(path, taken)
        except OSError:
            continue  # another server took it, or it vanished
        try:
            stored += _ingest_file(audit, kernel_id, taken)
        except Exception as e:  # noqa: BLE001 - keep the file for the next attempt
            log.error("jupyter-audit: spool %s not ingested (kept): %s", taken.name, e)
            os.rename(taken, path.with_name(f"{path.name}.retry-{os.getpid()}"))
            continue
        taken.unlink()
    return stored


def _ingest_file(audit, kernel_id: str, path: Path) -> int:
    attributor = Attributor(audit.cells, audit.writer.cursor)
    prepared, bad = [], 0
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                event = attributor.event(kernel_id, raw)
                event["flags"] = sorted({*event.get("flags", []), "spooled"})
                prepared.append(audit.writer.prepare(event))
                if event["kind"] in ("cell.started", "cell.finished"):
                    audit.cells.reported(event["msg_id"])
            except (ValueError, EventValidationError):
                bad += 1
    if prepared:
        audit.writer.submit_batch(prepared).result(timeout=600)  # acknowledged = committed
    if bad:
        audit.writer.append(
            {
                "kind": "security.rejected",
                "identity": system_identity(),
                "payload": {
                    "reason": f"{bad} malformed event(s) in a kernel spool file",
                    "source": f"spool of kernel {kernel_id}",
                },
            }
        )
    log.info("jupyter-audit: ingested %d spooled event(s) of kernel %s", len(prepared), kernel_id)
    return len(prepared)
