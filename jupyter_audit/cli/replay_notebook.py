"""The notebook `jupyter audit replay` writes (cli/replay.py reads the trace): one code cell
per run of a cell, in trail order, each after a markdown cell saying who ran it, when, how it
ended and what it did; the notebook's and each cell's metadata tie it to the records.

Every value from the trail reaches markdown as text only: HTML-escaped, markdown punctuation,
`$` and `:` escaped, on one line (`_text`), or inside a fence longer than any backtick run in
it (`_fence`); direction overrides, zero-width and control characters become visible markers.
Code stays in code cells, which are never rendered.
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime

from .terminal import INVISIBLE

REPLAY_FORMAT = 1
OPS = {"op.sql": "Queries", "op.http": "API calls", "op.shell": "Commands"}
# markdown punctuation, `$` (JupyterLab renders LaTeX) and `:` (no autolinked URLs)
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>$:])")
# direction overrides, zero-width and control characters: shown as markers, as the panel
# does, so a name or statement cannot read as something else ("Trojan Source")
_HIDDEN = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
    + INVISIBLE
    + "]"
)


def problem_text(integrity: dict) -> str:
    bad = integrity.get("first_bad_seq")
    return f"{integrity.get('problem') or 'broken'}" + (f" at #{bad}" if bad is not None else "")


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
    """The statement's type and tables as the server recorded them; a trail made before the
    server filled them has them read from the (masked) statement here (policy/describe.py,
    the server's own reading), and says so."""
    kind, tables = p.get("statement_type"), p.get("tables")
    if kind is None or tables is None:
        from ..policy.describe import describe_sql

        read_kind, read_tables = describe_sql(str(p.get("statement") or ""))
        if kind is None:
            kind = f"{read_kind} (read at replay)"
        if tables is None:
            named = ", ".join(read_tables)
            return kind, f" on {named} (read at replay)" if named else ""
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


def _people(trace: dict) -> list[str]:
    """Who took part: the paged API's `participants` (service accounts with their owner),
    else the usernames every trace summary has."""
    found = []
    for p in trace.get("participants") or []:
        name = str(p.get("username"))
        if p.get("service_account"):
            name += f" (service account of {p.get('token_owner')})"
        found.append(name)
    return found or list(trace.get("users") or [])


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
            f"> **Warning: the trail fails verification** ({_text(problem_text(integrity))}: "
            f"{_text(integrity.get('detail'))}). Records marked below are not vouched for; "
            "this replay was written with --allow-broken."
        )
    header += [
        f"- **Notebook:** {_text(' → '.join(n for n in names if n) or '(none)')}",
        f"- **Kernel:** {_text(trace.get('kernel_id'))} ({_text(kernel_name)})",
        f"- **People:** {_text(', '.join(_people(trace)))}",
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
