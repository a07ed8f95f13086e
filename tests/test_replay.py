"""`jupyter audit replay`: a trace's cells as a notebook, in the order they ran.

The live test runs cells in a real kernel through a real server (an edited re-run, a failing
cell, a sqlite query with a PII literal, a shell command, an HTTP call, a statement written to
break out of the annotation's markup), replays the trace over REST while the server runs and
from the file once it has stopped, reads both notebooks with nbformat and runs the replay
again with nbclient. The others use the synthetic demo trail: refusals, a tampered trail."""

import asyncio
import json
import re
import sqlite3
import threading
import urllib.parse
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import duckdb
import mistune
import nbformat
import pytest
from helpers.kernels import open_kernel
from helpers.servers import run_cli, server_config
from helpers.trail import wait_for

from jupyter_audit.cli import main as cli_main
from jupyter_audit.cli.demo import seed_demo_trail

PII_EMAIL = "jane.doe@example.com"
HOSTILE = "```</code><img src=x onerror=alert(1)> $x$ [a](javascript:alert(1))"


@pytest.fixture
def jp_server_config(trail_dir):
    return server_config(trail_dir / "trail.duckdb")


def cells(sqlite_path, url) -> list[tuple[str, str]]:
    """(cell id, code) in the order they run: cell `a` runs, is edited and runs again."""
    return [
        ("a", "x = 1\nprint('first', x)"),
        (
            "q",
            "import sqlite3\n"
            f"con = sqlite3.connect({str(sqlite_path)!r})\n"
            f"rows = con.execute(\"SELECT id FROM customers WHERE email = '{PII_EMAIL}'\")"
            ".fetchall()\nprint(len(rows))",
        ),
        ("h", f"import urllib.request\nurllib.request.urlopen({url!r}).status"),
        ("s", "!echo replay-shell"),
        ("bad", "1 / 0"),
        ("a", "x = 2\nprint('second', x)"),
        ("hostile", f"con.execute({'SELECT 1 -- ' + HOSTILE!r}).fetchall()"),
    ]


# what the replay's own markdown renders to: no link, image, raw HTML or attribute
SAFE_MARKUP = {
    *(("tag", t) for t in "h1 h3 p ul ol li strong em pre code blockquote".split()),
    ("attr", "class=language-sql"),
}


def _markup(nb) -> set[tuple[str, str]]:
    """Every tag and attribute the notebook's markdown cells render to (mistune, as
    JupyterLab's marked does: CommonMark with raw HTML passed through)."""
    found: set[tuple[str, str]] = set()

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.add(("tag", tag))
            found.update(("attr", f"{k}={v}") for k, v in attrs)

    for c in nb.cells:
        if c.cell_type == "markdown":
            Collect().feed(mistune.html(c.source))  # type: ignore[operator]
    return found


async def test_a_trace_replays_from_the_server_and_from_the_file(
    jp_serverapp, jp_fetch, jp_ws_fetch, jp_http_port, jp_base_url, trail_dir, tmp_path
):
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
    token = jp_serverapp.identity_provider.token
    data = tmp_path / "shop.sqlite"
    with sqlite3.connect(data) as s:  # a real sqlite file with a customer in it
        s.execute("CREATE TABLE customers (id INTEGER, email TEXT)")
        s.execute("INSERT INTO customers VALUES (1, ?)", (PII_EMAIL,))

    kid, client = await open_kernel(jp_fetch, jp_ws_fetch)
    statuses = []
    api = f"http://localhost:{jp_http_port}{jp_base_url}api"  # an IP address would be masked
    for cell_id, code in cells(data, api):
        status, _out, _errors = await client.run_full(code, cell_id=cell_id)
        statuses.append(status)
    assert statuses == ["ok", "ok", "ok", "ok", "error", "ok", "ok"]
    client.ws.close()
    await jp_fetch("api", "kernels", kid, method="DELETE")
    await wait_for(
        audit,
        lambda ev: (
            any(e["kind"] == "session.ended" and e["trace_id"] == kid for e in ev)
            and sum(e["kind"] == "cell.finished" and e["trace_id"] == kid for e in ev) >= 7
        ),
    )

    # over REST, while the server runs
    live = tmp_path / "live.ipynb"
    code, out, err = await asyncio.to_thread(
        run_cli, "replay", kid, "--url", url, "--token", token, "-o", str(live)
    )
    assert code == 0, err
    assert token not in out + err and "7 cell run(s)" in out

    # the replay runs again, while its data sources exist (the failing cell is tagged)
    from nbclient import NotebookClient

    rerun = nbformat.read(str(live), as_version=4)
    nbc = NotebookClient(rerun, timeout=120, kernel_name="python3")
    await nbc.async_execute()  # on this loop: the server keeps serving its API meanwhile
    outs = [c.outputs for c in rerun.cells if c.cell_type == "code"]
    assert outs[0][0].text == "first 1\n" and outs[5][0].text == "second 2\n"
    assert outs[4][0].ename == "ZeroDivisionError"
    assert outs[1][0].text == "0\n"  # the e-mail literal is masked: it no longer matches

    # ... and through the server, audited as a run of its own (the failing cell is tagged)
    code, out, err = await asyncio.to_thread(
        run_cli, "run", str(live), "--url", url, "--token", token, "-o", str(tmp_path / "re.ipynb")
    )
    assert code == 0, out + err
    rerun_kid = re.search(r"in kernel (\S+) \(trace \1\)", out).group(1)
    ran = nbformat.read(str(tmp_path / "re.ipynb"), as_version=4)
    outs = [c.outputs for c in ran.cells if c.cell_type == "code"]
    assert outs[4][0].ename == "ZeroDivisionError" and outs[5][0].text == "second 2\n"
    await wait_for(
        audit,
        lambda ev: (
            sum(e["kind"] == "cell.finished" and e["trace_id"] == rerun_kid for e in ev) >= 7
        ),
    )

    # from the file, the server stopped
    await jp_serverapp._cleanup()
    db = trail_dir / "trail.duckdb"
    offline = tmp_path / "offline.ipynb"
    code, out, err = await asyncio.to_thread(
        run_cli, "replay", kid, "--db", str(db), "-o", str(offline)
    )
    assert code == 0, err

    a, b = (nbformat.read(str(p), as_version=4) for p in (live, offline))
    nbformat.validate(a)
    nbformat.validate(b)
    assert [c.source for c in a.cells if c.cell_type == "code"] == [
        c.source for c in b.cells if c.cell_type == "code"
    ]
    meta = b.metadata["jupyter_audit"]["replay"]
    assert a.metadata["jupyter_audit"]["replay"]["last_hash"] == meta["last_hash"]
    assert meta["trace_id"] == kid and meta["runs"] == 7
    assert meta["source"]["db"] == str(db.resolve()) and meta["integrity"]["ok"]
    assert a.metadata["jupyter_audit"]["replay"]["source"] == {"url": url.rstrip("/")}
    with duckdb.connect(str(db), read_only=True) as con:
        rows = dict(
            con.execute("SELECT seq, hash FROM events WHERE trace_id = ?", [kid]).fetchall()
        )
    assert meta["first_seq"] == min(rows) and meta["last_seq"] == max(rows)
    assert meta["first_hash"] == bytes(rows[min(rows)]).hex()
    assert meta["last_hash"] == bytes(rows[max(rows)]).hex()

    code_cells = [c for c in b.cells if c.cell_type == "code"]
    runs = [c.metadata["jupyter_audit"]["replay"] for c in code_cells]
    # every run, in the order it ran, the edited cell as it ran each time
    assert [r["cell_id"] for r in runs] == [cid for cid, _ in cells(data, api)]
    assert code_cells[0].source == "x = 1\nprint('first', x)"
    assert code_cells[5].source == "x = 2\nprint('second', x)"
    assert [r["status"] for r in runs] == ["ok", "ok", "ok", "ok", "error", "ok", "ok"]
    assert code_cells[4].metadata["tags"] == ["raises-exception"]
    for r in runs:  # tied to the record: every event of the run, with its hash
        assert r["records"][0]["kind"] == "cell.requested"
        assert all(rows[x["seq"]].hex() == x["hash"] for x in r["records"])
        assert r["msg_id"]

    # the PII literal stays masked, in the code and in the annotation
    text = json.dumps(b) + json.dumps(a)
    assert PII_EMAIL not in text
    assert re.search(r"email = '‹EMAIL:[0-9a-f]{16}›'", code_cells[1].source)

    notes = {c.metadata["jupyter_audit"]["annotates_run"]: c.source for c in b.cells
             if "annotates_run" in c.metadata.get("jupyter_audit", {})}  # fmt: skip
    assert "**Who:** **" in notes[1] and "kernel started" in notes[1]
    assert "recorded by the server" in notes[1] and "kernel finished" in notes[1]
    # the statement's type and tables, as the server recorded them
    assert "Queries (1)" in notes[2] and "SELECT on customers" in notes[2]
    assert "shop\\.sqlite" in notes[2] and "‹EMAIL:" in notes[2]
    assert "API calls (1)" in notes[3] and "GET" in notes[3] and "200" in notes[3]
    assert "Commands (1)" in notes[4] and "replay\\-shell" in notes[4] and "exit 0" in notes[4]
    assert "error" in notes[5] and "ZeroDivisionError" in notes[5]
    assert "Cell a again (edited since its previous run)" in notes[6]

    # nothing a notebook user wrote becomes markup in the replay
    assert _markup(b) <= SAFE_MARKUP and "<img" in json.dumps(b)


# ---------------------------------------------------------------------------- demo trail
@pytest.fixture
def demo(tmp_path):
    db = tmp_path / "demo.duckdb"
    seed_demo_trail(db)
    with duckdb.connect(str(db), read_only=True) as con:
        traces = [
            r[0] for r in con.execute("SELECT trace_id FROM traces ORDER BY first_seq").fetchall()
        ]
    return db, traces


def test_refusals_exit_2_and_never_overwrite(demo, tmp_path, capsys):
    db, (trace, _) = demo
    out = tmp_path / "r.ipynb"
    assert cli_main(["replay", "nope", "--db", str(db), "-o", str(out)]) == 2
    assert "no trace 'nope'" in capsys.readouterr().err and not out.exists()
    assert cli_main(["replay", trace, "--db", str(tmp_path / "x.duckdb"), "-o", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    for bad in (tmp_path / "no" / "r.ipynb", tmp_path / "r.txt", tmp_path):
        assert cli_main(["replay", trace, "--db", str(db), "-o", str(bad)]) == 2
    out.write_text("mine")
    assert cli_main(["replay", trace, "--db", str(db), "-o", str(out)]) == 2
    assert "exists (pass --force" in capsys.readouterr().err and out.read_text() == "mine"
    assert cli_main(["replay", trace, "--db", str(db), "-o", str(out), "--force"]) == 0
    assert nbformat.read(str(out), as_version=4).metadata["jupyter_audit"]["replay"]["runs"] == 5
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_tampered_trail_is_refused_unless_allowed_and_then_marked(demo, tmp_path, capsys):
    db, (trace, _) = demo
    with duckdb.connect(str(db)) as con:
        con.execute(
            "UPDATE events SET record = encode(replace(decode(record), '1 / 0', '2 / 0')) "
            "WHERE kind = 'cell.requested' AND contains(decode(record), '1 / 0')"
        )
    out = tmp_path / "r.ipynb"
    assert cli_main(["replay", trace, "--db", str(db), "-o", str(out)]) == 2
    assert "fails verification" in capsys.readouterr().err and not out.exists()
    assert cli_main(["replay", trace, "--db", str(db), "-o", str(out), "--allow-broken"]) == 0
    nb = nbformat.read(str(out), as_version=4)
    assert "Warning: the trail fails verification" in nb.cells[0].source
    assert nb.metadata["jupyter_audit"]["replay"]["integrity"]["ok"] is False
    marked = [c.source for c in nb.cells if "**Fails verification:**" in c.source]
    assert len(marked) == 1 and "Run 5" in marked[0]


def test_hostile_names_are_shown_as_text(demo, tmp_path):
    db, (_, hostile) = demo  # the demo's second trace: HTML in its notebook name and code
    out = tmp_path / "r.ipynb"
    assert cli_main(["replay", hostile, "--db", str(db), "-o", str(out)]) == 0
    nb = nbformat.read(str(out), as_version=4)
    assert _markup(nb) <= SAFE_MARKUP
    assert "onerror=alert(1)&gt;" in mistune.html(nb.cells[0].source)  # shown as text
    assert [c.source for c in nb.cells if c.cell_type == "code"] == [
        "<script>alert('x')</script>"
    ]  # code stays code: a code cell is never rendered


def test_a_prefix_names_the_trace(demo, tmp_path):
    db, (trace, _) = demo
    out = tmp_path / "r.ipynb"
    assert cli_main(["replay", trace[:12], "--db", str(db), "-o", str(out)]) == 0
    assert (
        nbformat.read(str(out), as_version=4).metadata["jupyter_audit"]["replay"]["trace_id"]
        == trace
    )


# ---------------------------------------------------------------------------- written trail
CONTRACTOR = {
    "username": "contractor-etl",
    "auth_method": "service_token",
    "token_id": "tok-7f3a",
    "token_owner": "ada@example.org",
    "display_name": "contractor-etl (service account of ada@example.org)",
}
BOB = {"username": "bob", "auth_method": "oidc", "groups": ["audit-reviewers"]}


def test_a_service_account_an_approval_and_a_reused_msg_id(make_writer, trail_dir, tmp_path):
    """Who ran a run is the service account and its owner; approvals made from a cell are in
    its notes; a second start under a used msg_id (code sent straight to the kernel's shell
    port, which the server flags) is a run of its own, never folded into the first."""
    base = {"trace_id": "trace-svc", "kernel_id": "k-svc", "notebook": "etl.ipynb"}
    cell = {**base, "msg_id": "m1", "identity": CONTRACTOR}
    with make_writer() as w:
        w.append_many(
            [
                {**base, "kind": "session.started", "identity": CONTRACTOR,
                 "payload": {"reason": "start", "kernel_name": "python3"}},
                {**cell, "kind": "cell.requested",
                 "payload": {"code": "con.execute('DELETE FROM orders')", "cell_id": "c1\u202e"}},
                {**cell, "kind": "cell.started", "payload": {"execution_count": 1}},
                {**cell, "kind": "approval.requested",
                 "payload": {"request_id": "7", "statement": "DELETE FROM orders",
                             "reasons": ["delete without WHERE"]}},
                {**cell, "identity": BOB, "kind": "approval.decided",
                 "payload": {"request_id": "7", "decision": "approve", "reviewer": "bob",
                             "reason": "ticket 42"}},
                {**cell, "kind": "op.sql", "op_index": 1,
                 "payload": {"driver": "sqlite3", "statement": "DELETE FROM orders",
                             "rowcount": 3, "duration_us": 120}},
                {**cell, "kind": "cell.finished",
                 "payload": {"execution_count": 1, "status": "ok", "duration_us": 900}},
                {**cell, "kind": "cell.started", "flags": ["unattributed", "msg_id_reused"],
                 "payload": {"code": "import os", "execution_count": 2}},
                {**cell, "kind": "cell.finished", "flags": ["unattributed", "msg_id_reused"],
                 "payload": {"code": "import os", "status": "ok", "execution_count": 2}},
            ]
        )  # fmt: skip
    out = tmp_path / "svc.ipynb"
    assert cli_main(["replay", "trace-svc", "--db", str(trail_dir / "trail.duckdb"),
                     "-o", str(out)]) == 0  # fmt: skip
    nb = nbformat.read(str(out), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.source for c in code] == ["con.execute('DELETE FROM orders')", "import os"]
    first, second = (
        c.source for c in nb.cells if "annotates_run" in c.metadata.get("jupyter_audit", {})
    )
    assert r"service account **contractor\-etl** (token tok\-7f3a, owner ada@example\.org)" in first
    assert "request 7 approve bob ticket 42" in first and "approval\\.decided" in first
    assert "DELETE on orders" in first and "rowcount 3" in first
    assert r"Cell c1⟦U\+202E⟧." in first  # a direction override shows, never acts
    assert "**Not forwarded by the server**" in second
    assert "msg\\_id\\_reused" in second and "unattributed" in second


class _PagedTraces(BaseHTTPRequestHandler):
    """Issue 15's paged `GET traces/{id}` (after_seq, limit, next_after_seq, integrity), as
    /tmp/api-i15.md fixes it: a stand-in until that server is merged (branch i15-api)."""

    trace: dict = {}
    events: list = []
    asked: list = []
    stuck = False
    legacy = False  # today's one-page answer, cut short as a server without paging cuts it

    def do_GET(self):  # noqa: N802 - http.server's name
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        self.asked.append((url.path, q, self.headers.get("Authorization")))
        after = 0 if self.stuck else int(q.get("after_seq", 0))
        page = [e for e in self.events if e["seq"] > after][:5]
        more = page and page[-1]["seq"] < self.events[-1]["seq"]
        body = {
            "trace": self.trace,
            "events": page,
            "next_after_seq": page[-1]["seq"] if more else None,
            "total": len(self.events),
            "integrity": {"ok": True, "first_bad_seq": None, "problem": None},
        }
        if self.legacy:
            body = {"trace": self.trace, "events": self.events[:-1]}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_the_paged_rest_answer_is_read_to_its_end(demo, tmp_path, capsys):
    from jupyter_audit.store import queries
    from jupyter_audit.store.schema import open_readable

    db, (trace, _) = demo
    con, _meta = open_readable(db)
    _PagedTraces.trace = {
        **queries.get_trace_summary(con, trace),
        "participants": [
            {"username": "alice", "service_account": False, "token_owner": None},
            {"username": "etl", "service_account": True, "token_owner": "ada@example.org"},
        ],
    }
    _PagedTraces.events = queries.get_trace_events(con, trace)
    con.close()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PagedTraces)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        paged, whole = tmp_path / "paged.ipynb", tmp_path / "whole.ipynb"
        args = ["replay", trace, "--url", url, "--token", "T0KEN", "-o", str(paged)]
        assert cli_main(args) == 0
        assert cli_main(["replay", trace, "--db", str(db), "-o", str(whole)]) == 0
        a, b = (nbformat.read(str(p), as_version=4) for p in (paged, whole))
        assert [c.source for c in a.cells[1:]] == [c.source for c in b.cells[1:]]
        assert r"alice, etl \(service account of ada@example\.org\)" in a.cells[0].source
        meta = a.metadata["jupyter_audit"]["replay"]
        assert meta["events"] == len(_PagedTraces.events) == 20
        assert meta["integrity"]["checked"] == "the server's verification of this trace"
        # the id resolved first (one event asked for), then the pages
        assert [q.get("after_seq") for _p, q, _a in _PagedTraces.asked] == [
            None, None, "6", "11", "16"
        ]  # fmt: skip
        assert all(q["fold"] == "0" and h == "token T0KEN" for _p, q, h in _PagedTraces.asked)
        _PagedTraces.stuck = True  # a server whose paging never advances is not followed
        capsys.readouterr()
        assert cli_main([*args[:-1], str(tmp_path / "stuck.ipynb")]) == 2
        assert "paging did not advance" in capsys.readouterr().err
        _PagedTraces.legacy = True  # part of a trace is never replayed as if it were all
        assert cli_main([*args[:-1], str(tmp_path / "part.ipynb")]) == 2
        assert "the server sent 19 of the trace's 20 events" in capsys.readouterr().err
        assert not (tmp_path / "part.ipynb").exists()
    finally:
        server.shutdown()
