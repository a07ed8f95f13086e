"""`jupyter audit replay TRACE_ID (--db PATH | --url URL --token T) -o OUT.ipynb`: one trace's
cells as a notebook, in the order the server forwarded them (every run, edited re-runs as
they ran), each preceded by a markdown cell saying who ran it, when, how it ended and the
queries, API calls and commands it made.

This module reads the trace (`--db`: verified first; `--url`: through `GET traces/{id}`,
paged when the server pages) and writes the file; the notebook itself is made by
replay_notebook.py, which shows every recorded value as text only. Everything comes from the
signed records, masked as stored: nothing here sees an unmasked value or writes to the
trail. A trail that fails verification is refused unless `--allow-broken`, and then the
notebook says so at the top and marks the runs it cannot vouch for.
"""

from __future__ import annotations

import argparse
import os
import urllib.parse
from pathlib import Path

from .main import EXIT_OK, CLIError, _add_source, _api, _open_db, _source
from .replay_notebook import build_notebook, problem_text

PAGE = 5000  # events per REST page (the server's maximum)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "replay",
        help="write a trace's cells, in the order they ran, as an annotated notebook",
        description="Write the cells of trace TRACE_ID (a kernel's life) to a notebook in the "
        "order they ran, every run of every cell, each annotated with who ran it, when, its "
        "outcome and the queries, API calls and commands it made (masked as in the trail). "
        "Exit codes: 0 written, 2 unknown trace, trail failing verification (without "
        "--allow-broken), bad output path or usage error.",
    )
    p.add_argument("trace_id", metavar="TRACE_ID", help="the trace's id")
    _add_source(p)
    p.add_argument("-o", "--output", metavar="OUT.ipynb", required=True)
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.add_argument(
        "--allow-broken",
        action="store_true",
        help="write the replay even if the trail fails verification (the notebook says so)",
    )
    p.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    out = _output_path(args.output, args.force)
    kind, where = _source(args)
    if kind == "db" and not Path(where).exists():
        raise CLIError(f"no trail at {where}: file does not exist")
    args.trace_id = _full_id(args)
    if kind == "url":
        trace, events, integrity = _from_url(args)
        source = {"url": where}
    else:
        trace, events, integrity, trail_id = _from_db(where, args.trace_id)
        source = {"db": str(Path(where).resolve()), "trail_id": trail_id or ""}
    if not integrity.get("ok", True) and not args.allow_broken:
        raise CLIError(
            f"the trail fails verification ({problem_text(integrity)}); the replay would show "
            "records nobody can vouch for (pass --allow-broken to write it anyway, marked)"
        )
    nb = build_notebook(trace, events, source, integrity)
    import nbformat

    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        nbformat.write(nb, str(tmp))
        if not args.force and out.exists():  # appeared meanwhile: still never overwritten
            raise CLIError(f"{out} exists (pass --force to overwrite it)")
        tmp.replace(out)
    except OSError as e:
        raise CLIError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    runs = sum(c.cell_type == "code" for c in nb.cells)
    print(f"replayed trace {trace['trace_id']}: {runs} cell run(s), {len(events)} event(s)")
    print(f"wrote {out}")
    if not integrity.get("ok", True):
        print(f"  warning: the trail fails verification ({problem_text(integrity)})")
    return EXIT_OK


def _output_path(raw: str, force: bool) -> Path:
    out = Path(raw)
    if out.suffix != ".ipynb":
        raise CLIError(f"-o {raw}: the replay is a notebook; name it *.ipynb")
    if out.is_dir():
        raise CLIError(f"-o {raw} is a directory")
    if not out.parent.is_dir():
        raise CLIError(f"-o {raw}: no directory {out.parent}")
    if out.exists() and not force:
        raise CLIError(f"{raw} exists (pass --force to overwrite it)")
    return out


def _full_id(args: argparse.Namespace) -> str:
    """The trace's full id: an unambiguous prefix does too (cli/trace_ref.py, one rule in
    store/trace_ids.py)."""
    from .trace_ref import trace_ref

    return trace_ref(args, args.trace_id)


# ---------------------------------------------------------------------------- reading
def _from_db(path: str, trace_id: str) -> tuple[dict, list[dict], dict, str | None]:
    from ..store import queries
    from ..store.errors import TrailError
    from ..store.verify import verify_path

    try:
        result = verify_path(path)
    except TrailError as e:
        raise CLIError(str(e)) from None
    con, meta = _open_db(path)
    try:
        trace = queries.get_trace_summary(con, trace_id)
        if trace is None:
            raise CLIError(f"no trace {trace_id} in {path}")
        events = queries.get_trace_events(con, trace_id, trace, limit=2**62)
    finally:
        con.close()
    broken = {p["seq"] for p in result.problems if p["seq"] is not None}
    for ev in events:
        if ev["seq"] in broken or (not result.ok and ev["seq"] > result.intact_upto):
            ev["broken"] = True
    integrity = {
        "ok": result.ok,
        "first_bad_seq": result.first_bad_seq,
        "problem": result.problem,
        "detail": result.detail,
        "checkpoint": result.checkpoint
        and {k: result.checkpoint.get(k) for k in ("seq", "time", "key_id")},
        "checked": "verified by this command (jupyter audit verify --db)",
    }
    return trace, events, integrity, meta.get("trail_id")


def _from_url(args) -> tuple[dict, list[dict], dict]:
    """The trace through `GET traces/{id}`: today's one-page answer, or the paged one
    (`after_seq`, `limit`, `next_after_seq`), always unfolded (`fold=0`)."""
    path = f"traces/{urllib.parse.quote(args.trace_id, safe='')}"
    params: dict = {"fold": "0", "limit": PAGE}
    data = _api(args, path, params)
    trace, events = data["trace"], list(data["events"])
    while data.get("next_after_seq") is not None:
        after = data["next_after_seq"]
        data = _api(args, path, {**params, "after_seq": after})
        if not data["events"] or data["events"][0]["seq"] <= after:
            raise CLIError(f"the server's paging did not advance after #{after}")
        events += data["events"]
    expected = data.get("total", trace.get("events"))
    if isinstance(expected, int) and len(events) < expected:
        # a server without paging sends at most 10,000 events: never replay part of a trace
        raise CLIError(
            f"the server sent {len(events)} of the trace's {expected} events; replay it with "
            "--db (server stopped), or from a server that pages traces"
        )
    integrity = data.get("integrity")
    if integrity is not None:
        integrity = {**integrity, "checked": "the server's verification of this trace"}
    else:  # today's answer carries none: the whole trail's, as the server last verified it
        integrity = {
            **_api(args, "me")["trail"]["integrity"],
            "checked": "the server's verification of the trail when it opened it",
        }
    return trace, events, integrity
