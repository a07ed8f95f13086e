"""Ingest spool files that kernels left while no server could take their events.

A kernel whose server went away (killed, restarted) writes its events to
`audit-spool-<kernel id>.jsonl` (0600) in the runtime directory. A server ingests the spools
of kernels it does not manage itself (its own kernels replay their spools themselves):
at start and then periodically. Each file is renamed before it is read, so a kernel that is
still alive starts a new file; events are stored exactly once (kernel event ids), attributed
by the cells the trail holds, and flagged `spooled`. Anyone can put a file with such a name
in the runtime directory: a line is taken only with the HMAC its kernel's secret gives it
(`KernelSecrets.spool_line_ok`); the rest are refused and counted in a `security.rejected`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ...events import EventValidationError
from .attribution import Attributor

log = logging.getLogger("jupyter_audit.spools")
PREFIX, SUFFIX = "audit-spool-", ".jsonl"


CHUNK = 5000  # events prepared and committed at a time: memory stays bounded on big backlogs


def _kernel_of(name: str) -> str | None:
    """`audit-spool-<kernel>.jsonl`, or the same with `.ingesting-<pid>` / `.retry-<pid>`."""
    if not name.startswith(PREFIX) or SUFFIX not in name:
        return None
    return name[len(PREFIX) : name.index(SUFFIX)] or None


def _busy(name: str) -> bool:
    """Being ingested right now by another live server process."""
    _, sep, rest = name.rpartition(".ingesting-")
    pid = rest.split("-")[0]
    if not sep or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False  # that server died mid-way: take the file over (event ids dedupe)
    except PermissionError:
        return True
    return True


def spool_files(runtime_dir: str | Path, managed: set[str]) -> list[tuple[str, Path]]:
    out = []
    for path in sorted(Path(runtime_dir).glob(f"{PREFIX}*{SUFFIX}*")):
        kernel_id = _kernel_of(path.name)
        if ".foreign-" in path.name or ".rejected-" in path.name:
            continue  # another server's (its key is not ours), or kept as evidence
        if kernel_id and kernel_id not in managed and not _busy(path.name):
            out.append((kernel_id, path))
    return out


def ingest_spools(recorder, runtime_dir: str | Path, managed: set[str]) -> int:
    """Ingest every foreign spool file; returns the number of events stored. A file that
    cannot be ingested now is kept as `….retry-<pid>` and taken again next time."""
    stored = 0
    for kernel_id, path in spool_files(runtime_dir, managed):
        base = path.name[: path.name.index(SUFFIX) + len(SUFFIX)]
        n = 0
        while True:  # a unique name per attempt, so files never overwrite each other
            taken = path.with_name(f"{base}.ingesting-{os.getpid()}-{n}")
            if not taken.exists():
                break
            n += 1
        try:
            os.rename(path, taken)
        except OSError:
            continue  # another server took it, or it vanished
        if not _any_line_ours(recorder, kernel_id, taken):
            # not one line carries this server's HMAC: most likely the spool of a kernel of
            # another server sharing the runtime directory (another trail, another key).
            # Put it back for that server; never delete what this one cannot check.
            back = path if not path.exists() else taken.with_name(f"{base}.foreign-{n}")
            os.rename(taken, back)
            seen = (back.name, back.stat().st_size)
            told = recorder.foreign_spools
            if seen not in told:  # said once per file and size, not every interval
                if len(told) > 10_000:
                    told.clear()
                told.add(seen)
                recorder.reject(
                    "a kernel spool file with no line this server can check (another "
                    "server's, or forged): left in place, not ingested",
                    f"spool of kernel {kernel_id}",
                )
            continue
        try:
            stored += _ingest_file(recorder, kernel_id, taken)
        except Exception as e:  # noqa: BLE001 - keep the file for the next attempt
            log.error("jupyter-audit: spool %s not ingested (kept): %s", taken.name, e)
            os.rename(taken, taken.with_name(f"{base}.retry-{os.getpid()}-{n}"))
            continue
        taken.unlink()
    return stored


def _lines(path: Path):
    """(event bytes, mac) of each non-empty line; (None, None) for a line without a MAC."""
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            data, tab, mac = line.rstrip(b"\n").rpartition(b"\t")
            yield (data, mac) if tab else (None, None)


def _any_line_ours(recorder, kernel_id: str, path: Path) -> bool:
    secrets = recorder.kernel_secrets
    return any(
        data is not None and secrets.spool_line_ok(kernel_id, data, mac)
        for data, mac in _lines(path)
    )


def _ingest_file(recorder, kernel_id: str, path: Path) -> int:
    attributor = Attributor(recorder.cells, recorder.writer.cursor)
    stored, bad, forged = 0, 0, 0
    events: list = []

    def commit() -> None:
        nonlocal stored, bad
        if not events:
            return
        prepared = []
        for p in recorder.prepare_kernel_events(events):
            if isinstance(p, EventValidationError):
                bad += 1
            else:
                prepared.append(p)
        events.clear()
        if prepared:
            recorder.writer.submit_batch(prepared).result(timeout=600)  # acknowledged = committed
            stored += len(prepared)

    for data, mac in _lines(path):
        if data is None or not recorder.kernel_secrets.spool_line_ok(kernel_id, data, mac):
            forged += 1
            continue
        try:
            raw = json.loads(data)
            event = attributor.event(kernel_id, raw)
            event["flags"] = sorted({*event.get("flags", []), "spooled"})
            events.append(event)
        except (ValueError, EventValidationError):
            bad += 1
        if len(events) >= CHUNK:
            commit()
    commit()
    if forged:
        recorder.reject(
            f"{forged} line(s) of a kernel spool file not written by that kernel "
            "(missing or wrong HMAC)",
            f"spool of kernel {kernel_id}",
        )
    if bad:
        recorder.reject(
            f"{bad} malformed event(s) in a kernel spool file", f"spool of kernel {kernel_id}"
        )
    log.info("jupyter-audit: ingested %d spooled event(s) of kernel %s", stored, kernel_id)
    return stored
