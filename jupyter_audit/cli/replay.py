"""`jupyter audit replay TRACE_ID (--db PATH | --url URL --token T) -o OUT.ipynb`: one trace's
cells as a notebook, in the order the server forwarded them (every run, edited re-runs as
they ran), each preceded by a markdown cell saying who ran it, when, how it ended and the
queries, API calls and commands it made.

Everything comes from the signed records, masked as stored: this module never sees an
unmasked value and never writes to the trail. Every value from the trail reaches the
notebook's markdown escaped (text) or fenced (code), so a cell or a notebook name cannot
inject markup into the replay. A trail that fails verification is refused unless
`--allow-broken`, and then the notebook says so at the top and marks the cells it cannot
vouch for.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path

from .main import EXIT_OK, CLIError, _add_source, _api, _open_db, _source

REPLAY_FORMAT = 1
OPS = {"op.sql": "Queries", "op.http": "API calls", "op.shell": "Commands"}
PAGE = 5000  # events per REST page (the server's maximum)
# markdown punctuation, `$` (JupyterLab renders LaTeX) and `:` (no autolinked URLs)
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>$:])")
# direction overrides, zero-width and control characters: shown as markers, as the panel
# does, so a name or statement cannot read as something else ("Trojan Source")
_HIDDEN = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)


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
            f"the trail fails verification ({_problem(integrity)}); the replay would show "
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
        print(f"  warning: the trail fails verification ({_problem(integrity)})")
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
    """The trace's full id. HOOK for issue 15 (branch i15-trail): its resolver takes an
    unambiguous prefix too (cli/trace_ref.py, one rule in store/trace_ids.py); without it
    (this branch alone) the id is taken as given, so only full ids are found."""
    import importlib

    name = f"{__package__}.trace_ref"
    try:
        resolver = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        return args.trace_id
    return resolver.trace_ref(args, args.trace_id)


def _problem(integrity: dict) -> str:
    bad = integrity.get("first_bad_seq")
    return f"{integrity.get('problem') or 'broken'}" + (f" at #{bad}" if bad is not None else "")


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


# ---------------------------------------------------------------------------- markdown
def _text(value: object) -> str:
    """Inline markdown text showing `value` literally: HTML escaped, markdown punctuation
    escaped, on one line."""
    s = _shown(" ".join(str("" if value is None else value).split()))
    return _MD_SPECIAL.sub(r"\\\1", html.escape(s, quote=True))


def _shown(text: str) -> str:
    return _HIDDEN.sub(lambda m: f"⟦U+{ord(m.group()):04X}⟧", text)


def _fence(body: str, lang: str = "") -> str:
    """A fenced block that `body` cannot close early (markup inside is never rendered)."""
    body = _shown(body)
    longest = max((len(m) for m in re.findall(r"`+|~+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{body.rstrip()}\n{fence}"


def _ms(us: object) -> str:
    return f"{us / 1000:.1f} ms" if isinstance(us, int) else "?"


def who(identity: dict | None) -> str:
    """Who ran a step: the person, or the service account and its owner."""
    if not identity:
        return "no identity recorded"
    name = f"**{_text(identity.get('username'))}**"
    if identity.get("token_id"):
        return (
            f"service account {name} (token {_text(identity['token_id'])}, owner "
            f"{_text(identity.get('token_owner'))})"
        )
    details = [identity.get("display_name"), identity.get("email"), identity.get("auth_method")]
    if identity.get("issuer"):
        details.append(f"{identity['issuer']} subject {identity.get('subject')}")
    return f"{name} ({', '.join(_text(d) for d in details if d)})"


def _op_line(ev: dict) -> str:
    p = ev.get("payload") or {}
    kind = ev["kind"]
    if kind == "op.sql":
        kind_, tables = _statement_kind(p)
        text = f"{p.get('driver')} {p.get('database') or ''}: {kind_}{tables}"
        if p.get("rowcount") is not None and p["rowcount"] >= 0:
            text += f", rowcount {p['rowcount']}"
        text += f", {_ms(p.get('duration_us'))}"
    elif kind == "op.http":
        text = f"{p.get('method')} {p.get('url')} → {p.get('status')}, {_ms(p.get('duration_us'))}"
    else:
        text = f"{p.get('command')} → exit {p.get('exit_code')}, {_ms(p.get('duration_us'))}"
    if p.get("error"):
        text += f"; error: {p['error']}"
    line = f"1. {_text(text)} (#{ev['seq']}"
    line += f", kernel time {_text(ev['kernel_time'])})" if ev.get("kernel_time") else ")"
    if ev.get("flags"):
        line += f" flagged {_text(', '.join(ev['flags']))}"
    if kind == "op.sql":
        line += "\n\n" + _indent(_fence(str(p.get("statement") or ""), "sql"))
    return line


def _statement_kind(p: dict) -> tuple[str, str]:
    """The statement's type and tables as recorded; what the trail lacks is read from the
    (masked) statement by the risk policy's classifier, and says so."""
    kind, tables = p.get("statement_type"), p.get("tables")
    if kind is None or tables is None:
        from ..policy.sql import classify

        found = classify(str(p.get("statement") or ""))
        if kind is None:
            kinds = dict.fromkeys(s.statement_type for s in found)
            kind = "+".join(kinds) + " (classified at replay)" if kinds else "?"
        if tables is None:
            tables = list(dict.fromkeys(t for s in found for t in s.tables))
            return kind, f" writing {', '.join(tables)} (classified at replay)" if tables else ""
    return kind, f" on {', '.join(tables)}" if tables else ""


def _indent(block: str) -> str:
    return "\n".join("   " + line if line else line for line in block.splitlines())


def _note(ev: dict) -> str:
    """One line for an event that is not part of a cell (kernel start, restart, end…)."""
    p = ev.get("payload") or {}
    detail = p.get("reason") or p.get("original_kind") or p.get("what") or ""
    if ev["kind"].startswith("approval."):
        parts = [f"request {p.get('request_id')}", p.get("decision"), p.get("reviewer")]
        detail = " ".join(str(x) for x in [*parts, p.get("reason")] if x)
    line = f"- #{ev['seq']} {_text(ev['time'])}: **{_text(ev['kind'])}** {_text(detail)}"
    line += f" — {who(ev.get('identity'))}"
    if ev.get("broken"):
        line += " — **fails verification**"
    return line


# ---------------------------------------------------------------------------- notebook
def _group(events: list[dict]) -> list[tuple[str, object]]:
    """The trace as ("cell", [events of one run]) and ("note", event) items in trail order;
    a run is the events under one msg_id, placed where its first event is. A msg_id used
    again (a second request or a second start, which the server flags `msg_id_reused`)
    begins a new run, so a reused id never hides a run inside an earlier one."""
    items: list[tuple[str, object]] = []
    runs: dict[str, list[dict]] = {}
    for ev in events:
        mid = ev.get("msg_id")
        if mid and (ev["kind"].startswith(("cell.", "op.", "approval.")) or mid in runs):
            again = ev["kind"] in ("cell.requested", "cell.started")
            if mid not in runs or (again and _first(runs[mid], ev["kind"])):
                runs[mid] = []
                items.append(("cell", runs[mid]))
            runs[mid].append(ev)
        else:
            items.append(("note", ev))
    return items


def _first(run: list[dict], kind: str) -> dict | None:
    return next((e for e in run if e["kind"] == kind), None)


def _cell_pair(run: list[dict], n: int, previous: dict[str, str]):
    from nbformat.v4 import new_code_cell, new_markdown_cell

    req, started = _first(run, "cell.requested"), _first(run, "cell.started")
    finished = _first(run, "cell.finished")
    head = req or started or run[0]
    code = (head.get("payload") or {}).get("code")
    if code is None:
        code = ((finished or {}).get("payload") or {}).get("code") or ""
    cell_id = (head.get("payload") or {}).get("cell_id") or (
        (finished or {}).get("payload") or {}
    ).get("cell_id")
    lines = [f"### Run {n} · trail #{run[0]['seq']}–#{run[-1]['seq']}"]
    if cell_id:
        if cell_id in previous:
            edited = "edited since its previous run" if previous[cell_id] != code else "same code"
            lines.append(f"Cell {_text(cell_id)} again ({edited}).")
        else:
            lines.append(f"Cell {_text(cell_id)}.")
        previous[cell_id] = code
    if req is None:
        lines.append("**Not forwarded by the server**: the code is as the kernel reported it.")
    lines.append(f"- **Who:** {who(head.get('identity'))}")
    when = []
    for label, ev in (("kernel started", started), ("kernel finished", finished)):
        if ev and ev.get("kernel_time"):
            when.append(f"{label} {_text(ev['kernel_time'])}")
    when.append(f"recorded by the server {_text(head['time'])}")
    lines.append("- **When:** " + " · ".join(when))
    outcome, error = "no report from the kernel", None
    if finished:
        fp = finished.get("payload") or {}
        outcome = f"{_text(fp.get('status'))}, {_ms(fp.get('duration_us'))}"
        if fp.get("execution_count") is not None:
            outcome += f", execution count {fp['execution_count']}"
        err = fp.get("error")
        if isinstance(err, dict):
            error = f"{err.get('ename')}: {err.get('evalue')}"
        elif err:
            error = str(err)
    if _first(run, "cell.unreported"):
        outcome = "**capture gap**: the kernel answered but never reported this cell"
    lines.append(f"- **Outcome:** {outcome}" + (f" — {_text(error)}" if error else ""))
    flags = sorted({f for e in run for f in e.get("flags") or ()})
    if flags:
        lines.append(f"- **Flags:** {_text(', '.join(flags))}")
    if any(e.get("broken") for e in run):
        lines.append("- **Fails verification:** a record of this run is not vouched for")
    for kind, title in OPS.items():
        ops = [e for e in run if e["kind"] == kind]
        if ops:
            lines += [f"\n**{title} ({len(ops)})**\n", *(_op_line(e) for e in ops)]
    others = [e for e in run if not e["kind"].startswith("cell.") and e["kind"] not in OPS]
    if others:
        lines += ["\n**Other records**\n", *(_note(e) for e in others)]
    outputs = ((finished or {}).get("payload") or {}).get("outputs") or []
    texts = [str(o["text"]) for o in outputs if isinstance(o, dict) and o.get("text")]
    if texts:
        lines += ["\n**Recorded output (masked)**\n", _fence("\n".join(texts))]
    meta = {
        "run": n,
        "msg_id": head.get("msg_id"),
        "cell_id": cell_id,
        "status": ((finished or {}).get("payload") or {}).get("status"),
        "execution_count": ((finished or {}).get("payload") or {}).get("execution_count"),
        "username": (head.get("identity") or {}).get("username"),
        "records": [{"seq": e["seq"], "kind": e["kind"], "hash": e.get("hash")} for e in run],
    }
    md = new_markdown_cell("\n".join(lines), metadata={"jupyter_audit": {"annotates_run": n}})
    cell = new_code_cell(code, metadata={"jupyter_audit": {"replay": meta}})
    if meta["status"] == "error":
        cell.metadata["tags"] = ["raises-exception"]  # it failed when recorded: run on
    return md, cell


def build_notebook(trace: dict, events: list[dict], source: dict, integrity: dict):
    """The replay notebook (nbformat v4) of `trace` from its `events` (export records)."""
    from nbformat.v4 import new_markdown_cell, new_notebook

    items = _group(events)
    started = next((e for e in events if e["kind"] == "session.started"), None)
    kernel_name = ((started or {}).get("payload") or {}).get("kernel_name") or "python3"
    names = trace.get("notebooks") or [trace.get("notebook")]
    header = [f"# Replay of trace {_text(trace['trace_id'])}"]
    if not integrity.get("ok", True):
        header.append(
            f"> **Warning: the trail fails verification** ({_text(_problem(integrity))}: "
            f"{_text(integrity.get('detail'))}). Records marked below are not vouched for; "
            "this replay was written with --allow-broken."
        )
    header += [
        f"- **Notebook:** {_text(' → '.join(n for n in names if n) or '(none)')}",
        f"- **Kernel:** {_text(trace.get('kernel_id'))} ({_text(kernel_name)})",
        f"- **People:** {_text(', '.join(trace.get('users') or []))}",
        f"- **From** {_text(trace.get('started_at'))} **to** {_text(trace.get('last_at'))} "
        f"({_text(trace.get('status'))})",
        f"- **Trail:** {_text(source.get('db') or source.get('url'))}, records "
        f"#{events[0]['seq'] if events else '-'}–#{events[-1]['seq'] if events else '-'}; "
        f"integrity: {'intact' if integrity.get('ok', True) else 'BROKEN'} "
        f"({_text(integrity.get('checked'))})",
        "",
        "Each code cell is one run, in the order the server forwarded it; the markdown cell "
        "before it says who ran it, when and what it did. Code and values are as the trail "
        "stores them: masked values (‹TYPE:…›) stay masked, so a cell that used one will not "
        "run as it did. Cells that failed when recorded carry the `raises-exception` tag.",
    ]
    cells = [new_markdown_cell("\n".join(header), metadata={"jupyter_audit": {"header": True}})]
    previous: dict[str, str] = {}
    notes: list[str] = []
    n = 0
    for what, item in items + [("end", None)]:
        if what == "note":
            notes.append(_note(item))  # type: ignore[arg-type]
            continue
        if notes:
            cells.append(new_markdown_cell("\n".join(notes)))
            notes = []
        if what == "cell":
            n += 1
            cells += _cell_pair(item, n, previous)  # type: ignore[arg-type]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": kernel_name, "display_name": kernel_name}
    nb.metadata["jupyter_audit"] = {
        "replay": {
            "format": REPLAY_FORMAT,
            "trace_id": trace["trace_id"],
            "kernel_id": trace.get("kernel_id"),
            "notebooks": [n for n in names if n],
            "source": source,
            "first_seq": events[0]["seq"] if events else None,
            "last_seq": events[-1]["seq"] if events else None,
            "first_hash": events[0].get("hash") if events else None,
            "last_hash": events[-1].get("hash") if events else None,
            "events": len(events),
            "runs": n,
            "integrity": json.loads(json.dumps(integrity, default=str)),
            "replayed_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    }
    return nb
