"""`jupyter audit show TRACE` prints every event of a trace (no cut at 10,000), one line
each with the kernel's time (and the server's beside it where they differ), `--group`
folds repeats, `--limit` stops early, a trace id prefix works when it is unambiguous, and
nothing a notebook user wrote can drive the terminal. Exports carry `kernel_time`."""

import asyncio
import csv
import json
from datetime import UTC, datetime, timedelta

import pytest
from helpers.kernels import open_kernel
from helpers.servers import run_cli, server_config
from helpers.trail import ALICE, wait_for

from jupyter_audit.cli import main as cli_main

LONG = "abcdef01-0000-4000-8000-000000000001"
TWIN = "abcdef02-0000-4000-8000-000000000002"
OTHER = "0123456789"


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def op(trace: str, i: int, msg: str, statement: str, kernel_time: str, **payload) -> dict:
    return {
        "kind": "op.sql",
        "identity": ALICE,
        "trace_id": trace,
        "kernel_id": trace,
        "notebook": "loop.ipynb",
        "msg_id": msg,
        "op_index": i,
        "kernel_time": kernel_time,
        "payload": {"driver": "duckdb", "statement": statement, "params": [i], **payload},
    }


@pytest.fixture
def trail(make_writer, trail_dir):
    """A 12,000-event trace (a cell that ran `SELECT ? + 1` 11,997 times, then one that
    failed twice), its twin by prefix, and a short one."""
    w = make_writer()
    now = datetime.now(UTC)
    late = iso(now - timedelta(minutes=5))  # reported 5 minutes after it happened
    base = {"identity": ALICE, "trace_id": LONG, "kernel_id": LONG, "notebook": "loop.ipynb"}
    events = [{**base, "kind": "session.started", "payload": {"reason": "start"}}]
    events.append({**base, "kind": "cell.requested", "msg_id": "m1", "payload": {"code": "loop"}})
    events += [op(LONG, i, "m1", "SELECT ?  + 1", iso(now)) for i in range(11_996)]
    events += [op(LONG, 11_996 + i, "m2", "SELECT x", late, error="no x") for i in range(2)]
    assert len(events) == 12_000
    for trace in (TWIN, OTHER):
        events.append(
            {
                **base,
                "trace_id": trace,
                "kernel_id": trace,
                "kind": "session.started",
                "payload": {"reason": "start"},
            }
        )
    for i in range(0, len(events), 5000):
        w.append_many(events[i : i + 5000])
    w.close()
    return trail_dir / "trail.duckdb"


def event_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("  #")]


def test_show_prints_every_event_of_a_long_trace(trail):
    code, out, err = run_cli("show", "--db", str(trail), LONG)
    assert code == 0, err
    lines = event_lines(out)
    assert len(lines) == 12_000
    seqs = [int(line.split()[0][1:]) for line in lines]
    assert seqs == sorted(seqs)
    assert "SELECT ? + 1" in lines[5]  # whitespace runs shown as one space
    # the kernel's time; the server's beside it only where they are more than a second apart
    assert "(server " not in lines[5] and "(server " in lines[-1]
    assert "alice" in lines[5] and "op.sql" in lines[5]


def test_the_listing_finds_traces_by_any_part_of_a_name(trail, capsys):
    assert cli_main(["show", "--db", str(trail), "--notebook", "LOOP"]) == 0
    out = capsys.readouterr().out
    assert LONG in out and TWIN in out and OTHER in out
    assert cli_main(["show", "--db", str(trail), "--notebook", "other.ipynb"]) == 0
    assert capsys.readouterr().out.strip() == "no traces"


def test_limit_and_group(trail, capsys):
    assert cli_main(["show", "--db", str(trail), LONG, "--limit", "7"]) == 0
    assert len(event_lines(capsys.readouterr().out)) == 7
    assert cli_main(["show", "--db", str(trail), LONG, "--group"]) == 0
    lines = event_lines(capsys.readouterr().out)
    assert len(lines) == 4  # session.started, cell.requested, the loop, the failures
    loop, failures = lines[2], lines[3]
    assert "SELECT ? + 1  ×11996 (#" in loop and "failed" not in loop
    assert "SELECT x  ×2 (#" in failures and failures.endswith(", 2 failed)")
    first, last = failures.rsplit("(#", 1)[1].split(",")[0].split("–#")
    assert int(last) > int(first) == int(failures.split()[0][1:])
    assert cli_main(["show", "--db", str(trail), LONG, "--limit", "0"]) == 2


def test_a_trace_id_prefix_is_taken_when_it_is_unambiguous(trail, capsys, tmp_path):
    assert cli_main(["show", "--db", str(trail), LONG[:8], "--limit", "1"]) == 0
    assert f"trace {LONG}" in capsys.readouterr().out
    code, out, err = run_cli("show", "--db", str(trail), "abcdef")
    assert code == 2 and out == ""
    assert "2 traces start with 'abcdef'" in err
    assert LONG in err and TWIN in err and "loop.ipynb" in err
    code, _, err = run_cli("show", "--db", str(trail), "fedcba")
    assert code == 2 and "no trace 'fedcba'" in err
    code, _, err = run_cli("show", "--db", str(trail), "abcde")  # too short to be a prefix
    assert code == 2 and "at least 6 characters" in err
    assert cli_main(["show", "--db", str(trail), OTHER]) == 0  # a full id, however short
    for wildcard in ("%%%%%%", "______", "abcde%"):  # a prefix is text, not a pattern
        assert cli_main(["show", "--db", str(trail), wildcard]) == 2
    out = tmp_path / "twin.jsonl"
    assert cli_main(["export", "--db", str(trail), "--trace", TWIN[:8], "-o", str(out)]) == 0
    assert {json.loads(x)["trace_id"] for x in out.read_text().splitlines()} == {TWIN}
    assert cli_main(["export", "--db", str(trail), "--trace", "abcdef", "-o", str(out)]) == 2


def test_a_prefix_resolved_for_a_user_looks_among_their_traces_only(make_writer, trail_dir):
    """What a server answering a user asks: another person's trace is no candidate for a
    prefix, so a prefix tells nobody which ids others' traces have."""
    import duckdb

    from jupyter_audit.store.trace_ids import AmbiguousTrace, TraceNotFound, resolve_trace

    w = make_writer()
    bob = {"username": "bob", "auth_method": "token"}
    w.append_many(
        [
            {
                "identity": who,
                "trace_id": t,
                "kernel_id": t,
                "kind": "session.started",
                "payload": {"reason": "start"},
            }
            for who, t in ((ALICE, LONG), (bob, TWIN))
        ]
    )
    w.close()
    con = duckdb.connect(str(trail_dir / "trail.duckdb"), read_only=True)
    try:
        with pytest.raises(AmbiguousTrace) as e:
            resolve_trace(con, "abcdef")
        assert [c["trace_id"] for c in e.value.candidates] == [LONG, TWIN]
        assert resolve_trace(con, "abcdef", username="alice") == LONG
        assert resolve_trace(con, "abcdef02", 8, username="bob") == TWIN
        with pytest.raises(TraceNotFound):  # shorter than that server's minimum
            resolve_trace(con, "abcdef", 8, username="bob")
        with pytest.raises(TraceNotFound):  # a prefix of bob's trace, asked by alice
            resolve_trace(con, TWIN[:-1], username="alice")
        # a full id is found whoever's it is: the server then refuses it (403), as before
        assert resolve_trace(con, TWIN, username="alice") == TWIN
    finally:
        con.close()


def test_csv_export_carries_kernel_time(trail, tmp_path):
    out = tmp_path / "short.csv"
    assert cli_main(["export", "--db", str(trail), "--format", "csv", "-o", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert rows[3]["kind"] == "op.sql" and rows[3]["kernel_time"].endswith("Z")


def test_nothing_in_a_record_can_drive_the_terminal(make_writer, trail_dir):
    hostile = "\x1b]0;owned\x07\x1b[2J\u202eevil\u2066\r\n<b>x</b>"
    w = make_writer()
    base = {"identity": ALICE, "trace_id": "hostile-1", "kernel_id": "hostile-1"}
    w.append_many(
        [
            {**base, "notebook": hostile, "kind": "session.started", "payload": {"reason": "s"}},
            {
                **base,
                "kind": "session.renamed",
                "notebook": hostile + "2",
                "payload": {"from": hostile, "to": hostile + "2"},
            },
            {**base, "kind": "cell.requested", "msg_id": "m", "payload": {"code": hostile}},
            {**op("hostile-1", 0, "m", hostile, iso(datetime.now(UTC))), "notebook": hostile},
        ]
    )
    w.close()
    db = str(trail_dir / "trail.duckdb")
    for args in (
        ("show", "--db", db),
        ("show", "--db", db, "hostile-1"),
        ("show", "--db", db, "--group", "hostile-1"),
    ):
        code, out, err = run_cli(*args)
        assert code == 0, err
        for bad in ("\x1b", "\x07", "\u202e", "\u2066", "\r"):
            assert bad not in out, (args, bad)
        assert "\\x1b]0;owned\\x07" in out
    assert "earlier: " in run_cli("show", "--db", db, "hostile-1")[1]


class TestLive:
    @pytest.fixture
    def jp_server_config(self, trail_dir):
        return server_config(trail_dir / "trail.duckdb")

    async def test_show_through_the_server_takes_a_prefix(
        self, jp_serverapp, jp_fetch, jp_ws_fetch, jp_http_port, jp_base_url, capsys, tmp_path
    ):
        audit = jp_serverapp.web_app.settings["jupyter_audit"]
        kid, client = await open_kernel(jp_fetch, jp_ws_fetch)
        assert (await client.run("SELECT = 1"))[0] == "ok"
        assert (await client.run("1 / 0"))[0] == "error"
        client.ws.close()
        await wait_for(
            audit,
            lambda ev: sum(e["kind"] == "cell.finished" and e["trace_id"] == kid for e in ev) == 2,
        )
        url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
        token = jp_serverapp.identity_provider.token
        args = ["show", "--url", url, "--token", token]
        capsys.readouterr()
        assert await asyncio.to_thread(cli_main, [*args, kid[:6]]) == 0
        out = capsys.readouterr().out
        assert f"trace {kid}" in out and "SELECT = 1" in out
        assert "[error]" in out and "ZeroDivisionError: division by zero" in out
        assert await asyncio.to_thread(cli_main, [*args, "zzzzzz"]) == 2
        out = tmp_path / "trace.jsonl"
        export = ["export", *args[1:], "--trace", kid[:6], "-o", str(out)]
        assert await asyncio.to_thread(cli_main, export) == 0
        assert {json.loads(x)["trace_id"] for x in out.read_text().splitlines()} == {kid}
        capsys.readouterr()
        assert await asyncio.to_thread(cli_main, [*args, "--notebook", "nothing-such"]) == 0
        assert capsys.readouterr().out.strip() == "no traces"


class ContractServer:
    """`GET traces/{id}` as /tmp/api-i15.md (issue 15's REST contract) pages it: `after_seq`,
    `limit`, `next_after_seq`. A stand-in until the server side of issue 15 is merged (the
    CLI's paging is what is under test; tests/test_trace_api.py tests the server's)."""

    def __init__(self, trace_id: str, events: int):
        import http.server
        import threading
        import urllib.parse

        self.requests: list[dict] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                q = dict(urllib.parse.parse_qsl(url.query))
                outer.requests.append(q)
                after, limit = int(q.get("after_seq") or 0), int(q["limit"])
                seqs = list(range(after + 1, min(after + limit, events) + 1))
                body = {
                    "trace": {
                        "trace_id": trace_id,
                        "kernel_id": trace_id,
                        "notebook": "new.ipynb",
                        "notebooks": ["old.ipynb", "new.ipynb"],
                        "users": ["alice"],
                        "started_at": "2026-12-06T00:00:00Z",
                        "last_at": "2026-12-06T01:00:00Z",
                        "status": "ended",
                    },
                    "events": [
                        {
                            "seq": s,
                            "kind": "op.sql",
                            "time": "2026-12-06T00:00:05.000000Z",
                            "kernel_time": "2026-12-06T00:00:01.000000Z",
                            "identity": {"username": "alice"},
                            "msg_id": "m",
                            "payload": {"driver": "duckdb", "statement": f"SELECT {s}"},
                        }
                        for s in seqs
                    ],
                    "next_after_seq": seqs[-1] if seqs and seqs[-1] < events else None,
                    "total": events,
                }
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_show_through_a_server_pages_to_the_end(capsys):
    server = ContractServer(LONG, 2_500)
    try:
        assert cli_main(["show", "--url", server.url, "--token", "t", LONG]) == 0
    finally:
        server.close()
    out = capsys.readouterr().out
    lines = event_lines(out)
    assert len(lines) == 2_500 and "SELECT 2500" in lines[-1]
    assert "notebook: new.ipynb (earlier: old.ipynb)" in out
    assert "2026-12-06 00:00:01.000 (server 00:00:05)" in lines[0]
    assert [r.get("after_seq") for r in server.requests] == [None, "1000", "2000"]
    assert {r["fold"] for r in server.requests} == {"0"}
