"""`jupyter audit show [TRACE]`: the traces, or every event of one trace, one line each.

A trace prints whole by default, streamed (records are read and printed a page at a time,
so memory stays flat however long the trace): `--limit N` stops after N lines, `--group`
folds consecutive repeats of an operation in a cell into one line with a count
(store/folding.py). Each line shows when the step happened in the kernel (`kernel_time`),
with the server's record time beside it where the two differ by more than a second, who
did it, the kind and a short summary of the (masked) record. Everything printed from the
trail goes through `terminal.printable`: a notebook name or a statement cannot drive the
terminal. TRACE may be a full id or a prefix of at least six characters (`trace_ref`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import urllib.parse
from collections.abc import Iterable, Iterator
from datetime import datetime

from ..store.folding import failed, fold_key
from ..store.trace_ids import MIN_PREFIX
from .archive import add_archive_option, combined
from .main import EXIT_OK, CLIError, _add_source, _api, _open_source, _source
from .terminal import printable
from .trace_ref import trace_in, trace_ref

PAGE = 1000  # events per REST page
SUMMARY_WIDTH = 100
SKEW_S = 1.0  # kernel and server times further apart than this are both shown


def add_parser(sub) -> None:
    p = sub.add_parser(
        "show",
        help="list traces, or print every event of one trace",
        description="Without TRACE: the newest traces. With TRACE (a full id or a prefix of "
        f"at least {MIN_PREFIX} characters): every event of that trace, one line each, in "
        "trail order, with the kernel's time (and the server's where they differ by more "
        "than a second), who, the kind and a short masked summary.",
    )
    _add_source(p, pg=True)
    p.add_argument("trace_id", nargs="?", metavar="TRACE")
    p.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="at most N lines (default: every event of a trace; 50 traces in a listing)",
    )
    p.add_argument("--user", help="only traces of this username")
    p.add_argument(
        "--notebook", metavar="NAME", help="only traces that were ever named like NAME (listing)"
    )
    p.add_argument(
        "--group",
        action="store_true",
        help="fold consecutive identical statements/commands of a cell into one line",
    )
    add_archive_option(p)
    p.set_defaults(func=cmd_show)


@contextlib.contextmanager
def _trail(args, kind: str, where: str) -> Iterator:
    """The trail file (`--db`), a collector's PostgreSQL trail (`--pg`), or archive + either
    as one (`--archive`), read-only."""
    if getattr(args, "archive", None):
        with combined(args) as con:
            yield con
        return
    con, _meta = _open_source(kind, where)
    try:
        yield con
    finally:
        con.close()


def cmd_show(args) -> int:
    if args.limit is not None and args.limit < 1:
        raise CLIError("--limit must be at least 1")
    try:
        if args.trace_id:
            _show_trace(args)
        else:
            _show_traces(args)
    except BrokenPipeError:  # `show … | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK


# ---------------------------------------------------------------------------- listing
def _show_traces(args) -> None:
    limit = args.limit or 50
    kind, where = _source(args)
    if kind == "url" and not args.archive:
        params = {"limit": limit, "user": args.user, "notebook": args.notebook}
        traces = _api(args, "traces", params)["traces"]
        if args.notebook is not None:
            # the server matches every earlier name too (`notebooks`); one that predates the
            # `notebook` parameter ignores it, so the listing is narrowed here as well
            want = args.notebook.lower()
            traces = [
                t
                for t in traces
                if any(want in (n or "").lower() for n in t.get("notebooks") or [t["notebook"]])
            ]
        _print_traces(traces)
        return
    from ..store import queries

    with _trail(args, kind, where) as con:
        if args.notebook is None:
            traces = queries.list_traces(con, username=args.user, limit=limit)
        else:
            # every trace ever named like it, newest first (as the listing orders them)
            found = (
                queries.get_trace_summary(con, t)
                for t in queries.traces_named(con, args.notebook, partial=True)
            )
            traces = sorted(
                (t for t in found if t and (args.user is None or args.user in t["users"])),
                key=lambda t: -t["last_seq"],
            )[:limit]
        _print_traces(traces)


def _print_traces(traces: list[dict]) -> None:
    if not traces:
        print("no traces")
        return
    print(f"{'TRACE':36}  {'STARTED':20}  {'CELLS':>5}  {'OPS':>5}  {'STATUS':7}  USERS / NOTEBOOK")
    for t in traces:
        print(
            f"{printable(t['trace_id']):36}  {printable(t['started_at'])[:19]:20}  "
            f"{t['cells']:>5}  {t['operations']:>5}  {printable(t['status']):7}  "
            f"{printable(', '.join(t['users']))}  {printable(t['notebook'] or '(no notebook)')}"
        )


# ---------------------------------------------------------------------------- one trace
def _show_trace(args) -> None:
    kind, where = _source(args)
    if kind == "url" and not args.archive:
        try:  # a full id, or a prefix the server resolves (at least 8 characters)
            first = _api(args, _trace_path(args.trace_id), _page_params(None))
        except CLIError as e:
            if e.status not in (400, 404):
                raise
            first = _api(args, _trace_path(trace_ref(args, args.trace_id)), _page_params(None))
        trace_id = first["trace"]["trace_id"]
        _print_header(first["trace"], first["trace"].get("notebooks"))
        _print_events(_url_events(args, trace_id, first), args)
        return
    from ..store import queries

    with _trail(args, kind, where) as con:
        trace_id = trace_in(con, args.trace_id)
        summary = queries.get_trace_summary(con, trace_id)
        if summary is None:
            raise CLIError(f"no trace {printable(trace_id)}")
        _print_header(summary, _names(con, trace_id))
        _print_events(queries.iter_trace(con, trace_id, page=PAGE), args)


def _names(con, trace_id: str) -> list[str]:
    """Every notebook name the trace had, oldest first."""
    rows = con.execute(
        "SELECT notebook FROM events WHERE trace_id = ? AND notebook IS NOT NULL "
        "AND notebook <> '' GROUP BY notebook ORDER BY min(seq)",
        [trace_id],
    ).fetchall()
    return [r[0] for r in rows]


def _trace_path(trace_id: str) -> str:
    return f"traces/{urllib.parse.quote(trace_id, safe='')}"


def _page_params(after: int | None) -> dict:
    return {"after_seq": after, "limit": PAGE, "fold": 0}


def _url_events(args, trace_id: str, first: dict) -> Iterator[dict]:
    """Every event of the trace, page after page (`GET traces/{id}?after_seq=…`)."""
    page = first
    while True:
        yield from page["events"]
        if "next_after_seq" not in page:
            # a server from before paging answers with the first 10,000 events only
            if len(page["events"]) >= 10_000:
                print(
                    "jupyter audit show: warning: this server sends the first 10,000 events "
                    "of a trace only; stop it and use --db for the rest",
                    file=sys.stderr,
                )
            return
        after = page["next_after_seq"]
        if after is None:
            return
        page = _api(args, _trace_path(trace_id), _page_params(after))


def _print_header(summary: dict, names: list[str] | None) -> None:
    current = summary.get("notebook") or ""
    earlier = [n for n in (names or []) if n != current]
    nb = printable(current or "(none)")
    if earlier:
        nb += f" (earlier: {', '.join(printable(n) for n in earlier)})"
    print(f"trace {printable(summary['trace_id'])}  notebook: {nb}")
    users = printable(", ".join(summary.get("users") or []))
    print(f"  users: {users}  kernel: {printable(summary.get('kernel_id'))}")
    print(
        f"  {printable(summary.get('started_at'))} .. {printable(summary.get('last_at'))}  "
        f"({printable(summary.get('status'))})"
    )


def _print_events(events: Iterable[dict], args) -> None:
    from ..identity.snapshot import actor_label

    out = sys.stdout
    n = 0
    for ev, group in _grouped(events) if args.group else ((ev, None) for ev in events):
        if args.limit is not None and n >= args.limit:
            break
        n += 1
        who = printable(actor_label(ev.get("identity")))
        # runs of whitespace made one space first: padding cannot push the rest of a
        # statement (`SELECT 1` + 300 spaces + `; DELETE …`) past the cut
        line = printable(" ".join(step_summary(ev).split()), SUMMARY_WIDTH)
        if group is not None and group[0] > 1:
            count, last_seq, errors = group
            line += f"  ×{count} (#{ev['seq']}–#{last_seq}" + (
                f", {errors} failed)" if errors else ")"
            )
        out.write(f"  #{ev['seq']:<8} {when(ev)}  {printable(ev.get('kind')):16} {who:12} {line}\n")
    out.flush()


def _grouped(events: Iterable[dict]) -> Iterator[tuple[dict, list]]:
    """(first event, [count, last seq, failed]) for each run of consecutive repeats."""
    first: dict | None = None
    key = None
    group: list = []
    for ev in events:
        k = fold_key(ev)
        if first is not None and k is not None and k == key:
            group[0] += 1
            group[1] = ev["seq"]
            group[2] += failed(ev)
            continue
        if first is not None:
            yield first, group
        first, key, group = ev, k, [1, ev["seq"], int(failed(ev))]
    if first is not None:
        yield first, group


def _parse(ts) -> datetime | None:
    try:
        return datetime.fromisoformat(ts) if isinstance(ts, str) else None
    except ValueError:
        return None


def when(ev: dict) -> str:
    """The kernel's time of a step (else the server's), and the server's beside it where
    they differ by more than a second."""
    server, kernel = _parse(ev.get("time")), _parse(ev.get("kernel_time"))
    shown = kernel or server
    if shown is None:
        return printable(ev.get("time"))[:23]
    text = shown.strftime("%Y-%m-%d %H:%M:%S.") + f"{shown.microsecond // 1000:03d}"
    if kernel is not None and server is not None:
        if abs((server - kernel).total_seconds()) > SKEW_S:
            fmt = "%H:%M:%S" if server.date() == kernel.date() else "%Y-%m-%d %H:%M:%S"
            text += f" (server {server.strftime(fmt)})"
    return text


def text_or(lines: list[str]) -> str:
    return lines[0] if lines else ""


def step_summary(ev: dict) -> str:
    """A short summary of one (masked) record, on one line."""
    p = ev.get("payload") or {}
    kind = ev.get("kind", "")
    if kind.startswith("cell."):
        code = (p.get("code") or "").strip().splitlines()
        text = code[0] if code else ""
        if kind == "cell.started" and p.get("execution_count") is not None:
            text = f"In [{p.get('execution_count')}] {text}"
        elif kind == "cell.finished":
            took = p.get("duration_us")
            error = p.get("error")
            if isinstance(error, dict):  # the kernel side's error summary
                error = ": ".join(str(error[k]) for k in ("ename", "evalue") if error.get(k))
            text = f"[{p.get('status')}]" + (f" {took / 1000:.1f} ms" if took else "")
            text += f" {error}" if error else f" {text_or(code)}"
        elif kind == "cell.unreported":
            text = p.get("reason") or ""
        return text.rstrip()
    if kind == "op.sql":
        return f"{p.get('driver')}: {p.get('statement')}"
    if kind == "op.http":
        return f"{p.get('method')} {p.get('url')} -> {p.get('status')}"
    if kind == "op.shell":
        return f"$ {p.get('command')} (exit {p.get('exit_code')})"
    if kind == "op.unattributed":
        what = p.get("statement") or p.get("command") or p.get("url") or ""
        return f"{p.get('original_kind')}: {what}"
    if kind == "session.renamed":
        return f"{p.get('from') or '(no notebook)'} -> {p.get('to')}"
    if kind.startswith("session."):
        return p.get("reason") or ""
    if kind == "file.saved":
        return f"{p.get('path')} sha256 {str(p.get('sha256') or '')[:12]} ({p.get('size')} bytes)"
    if kind == "trail.accessed":
        return f"{p.get('action')}"
    if kind.startswith("approval."):
        return " ".join(
            str(x) for x in (p.get("request_id"), p.get("decision"), p.get("statement")) if x
        )
    if kind == "security.rejected":
        return p.get("reason") or ""
    return ""
