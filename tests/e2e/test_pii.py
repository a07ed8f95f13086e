"""End to end: a notebook that handles customers' PII leaves none of it in the trail.

A real server process (its whole log captured at DEBUG), a real kernel running a real notebook
through `jupyter audit run`: it queries customers (names, e-mails, phones, card numbers) from
real sqlite3 and DuckDB files (and PostgreSQL when JUPYTER_AUDIT_TEST_PG_DSN is set), prints
the rows and a pandas dataframe, updates and inserts with parameters, posts to a local HTTP API
(started here, through requests) with a key in the URL and customers' data in a JSON body, runs a shell command
with a password flag and sets a secret by subscript. Then every original value is searched
for in the raw bytes of the trail file and its WAL, in every column of every table, in the
server log and in `jupyter audit export`: none may be found.

Some values are masked by the text recognizers alone (a phone number in free text, a password
flag, a secret set by subscript, from issue 13's other half, branch i13-recognizers): they
are listed apart, in RECOGNIZER_VALUES.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import duckdb
import pytest
from helpers.notebooks import write_notebook
from helpers.servers import free_port, run_cli

TOKEN = "pii-test-token"
PG_DSN = os.environ.get("JUPYTER_AUDIT_TEST_PG_DSN")

CUSTOMERS = [
    (1, "Annabel Leewright", "annabel.leewright@example.com", "+1 415 555 0132", "4111111111111111"),
    (2, "Bogdan Raymonde", "b.raymonde@example.org", "020 7946 0958", "5500005555555559"),
    (3, "Céline Ortaquez", "celine.o@example.net", "(212) 555-0187", "340000000000009"),
]  # fmt: skip
API_KEY = "Kq7pX2mN9vR4tL8wZ"
PASSWORD_FLAG = "Pa55w0rdFlagValue"
SUBSCRIPT_SECRET = "Tr0ub4dorSubscript"
FREE_TEXT_PHONE = "+44 20 7946 0321"

# masked by structure (their column or key) and the recognizers
STRUCTURED_VALUES = [
    *(v for c in CUSTOMERS for v in c[1:]),
    *(c[1].upper() for c in CUSTOMERS),  # an UPDATE's parameter
    API_KEY,
]
# masked by the text recognizers alone
RECOGNIZER_VALUES = [PASSWORD_FLAG, SUBSCRIPT_SECRET, FREE_TEXT_PHONE]


def cells(port: int, sqlite_path, duck_path) -> list[str]:
    out = [
        f"""import sqlite3
con = sqlite3.connect({str(sqlite_path)!r})
rows = con.execute(
    "SELECT id, name, email, phone, card_number FROM customers WHERE email <> ? ORDER BY id",
    ("nobody@example.com",),
).fetchall()
print(rows)
for row in rows:
    print(row)""",
        f"""con.execute("UPDATE customers SET name = ? WHERE id = ?", (rows[0][1].upper(), rows[0][0]))
con.executemany(
    "INSERT INTO contacts (full_name, phone) VALUES (?, ?)", [(r[1], r[3]) for r in rows]
)
con.execute(f"SELECT id FROM customers WHERE name = '{{rows[1][1]}}'").fetchall()
con.execute("SELECT id FROM customers WHERE name = '{CUSTOMERS[1][1]}'").fetchall()
con.executemany(
    "INSERT INTO contacts (full_name, phone) VALUES (?, ?)",
    [("{CUSTOMERS[2][1]}", "{CUSTOMERS[2][3]}")],
)
con.commit()""",
        """import pandas as pd
df = pd.read_sql_query("SELECT * FROM customers", con)
print(df)
df""",
        f"""import duckdb
dcon = duckdb.connect({str(duck_path)!r})
found = dcon.execute(
    "SELECT id, name, email, phone FROM customers WHERE name = ? OR card_number = ?",
    [rows[2][1], rows[2][4]],
).fetchall()
print(found)
dcon.execute("SELECT * FROM customers").df()""",
        f"""import requests
API_KEY = {API_KEY!r}
r = requests.post(
    f"http://127.0.0.1:{port}/customers?api_key={{API_KEY}}&email={{rows[1][2]}}",
    json={{"customer": {{"name": rows[1][1], "phone": rows[1][3]}}, "api_key": API_KEY}},
    timeout=30,
)
print(r.status_code, len(r.json()["customer"]))""",
        f"""!mysql --user=app --password={PASSWORD_FLAG} -e 'select 1' 2>/dev/null || true""",
        f"""import os
os.environ["DB_PASSWORD"] = {SUBSCRIPT_SECRET!r}
print("call the office on {FREE_TEXT_PHONE}")""",
    ]
    if PG_DSN:
        out.insert(
            4,
            f"""import psycopg
with psycopg.connect({PG_DSN!r}) as pg:
    cur = pg.execute(
        "SELECT id, name, email, phone FROM pii_customers WHERE full_name = %s OR id = %s",
        (rows[0][1], 2),
    )
    print(cur.fetchall())
    pg.execute("DELETE FROM pii_customers WHERE email = %(e)s", {{"e": rows[2][2]}})""",
        )
    return out


class _Api(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        reply = json.dumps({"ok": True, "customer": body["customer"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def _databases(tmp_path):
    schema = (
        "CREATE TABLE customers (id INTEGER, name TEXT, email TEXT, phone TEXT, card_number TEXT)"
    )
    sqlite_path = tmp_path / "crm.sqlite"
    con = sqlite3.connect(sqlite_path)
    con.execute(schema)
    con.execute("CREATE TABLE contacts (full_name TEXT, phone TEXT)")
    con.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?)", CUSTOMERS)
    con.commit()
    con.close()
    duck_path = tmp_path / "crm.duckdb"
    dcon = duckdb.connect(str(duck_path))
    dcon.execute(schema.replace("TEXT", "VARCHAR"))
    dcon.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?)", CUSTOMERS)
    dcon.close()
    if PG_DSN:
        import psycopg

        with psycopg.connect(PG_DSN) as pg:
            pg.execute("DROP TABLE IF EXISTS pii_customers")
            pg.execute(
                "CREATE TABLE pii_customers (id INT, full_name TEXT, name TEXT, email TEXT, "
                "phone TEXT)"
            )
            for c in CUSTOMERS:
                pg.execute(
                    "INSERT INTO pii_customers VALUES (%s, %s, %s, %s, %s)", (*c[:2], *c[1:4])
                )
    return sqlite_path, duck_path


def _api(port, path):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/{path}", headers={"Authorization": f"token {TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def _start_server(tmp_path, db, port, log):
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
    }
    (tmp_path / "root").mkdir()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_server",
            "--allow-root",
            "--no-browser",
            f"--port={port}",
            "--ServerApp.port_retries=0",
            "--ip=127.0.0.1",
            "--log-level=DEBUG",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={tmp_path / 'root'}",
            f"--AuditApp.db_path={db}",
            "--AuditApp.capture_body_hosts=127.0.0.1",
            "--ServerApp.jpserver_extensions={'jupyter_audit': True}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            _api(port, "api/status")
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the server did not start")


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """name -> text of every place the trail's content can be read: raw bytes of the trail
    file and its WAL (as latin-1 and UTF-8), each table's every column, the server log and
    the JSONL export. The notebook ran once for the module."""
    tmp_path = tmp_path_factory.mktemp("pii")
    sqlite_path, duck_path = _databases(tmp_path)
    api = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    db = tmp_path / "audit" / "trail.duckdb"
    port = free_port()
    log_path = tmp_path / "server.log"
    found: dict[str, str] = {}
    nb = tmp_path / "customers.ipynb"
    sources = cells(api.server_address[1], sqlite_path, duck_path)
    write_notebook(nb, *sources)
    with open(log_path, "w") as log:
        server = _start_server(tmp_path, db, port, log)
        try:
            code, out, err = run_cli(
                "run", str(nb), "--url", f"http://127.0.0.1:{port}", "--token", TOKEN
            )
            assert code == 0, out + err
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # every cell's report is in
                traces = _api(port, "jupyter-audit/api/traces")["traces"]
                if traces and traces[0].get("cells", 0) >= len(sources):
                    break
                time.sleep(0.2)
            wal = db.with_name(db.name + ".wal")
            if wal.exists():  # the WAL while the server runs
                found["wal (running)"] = _raw(wal.read_bytes())
            found["trail file (running)"] = _raw(db.read_bytes())
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            api.shutdown()
    found["server log"] = log_path.read_text("utf-8", "replace")
    for path in db.parent.iterdir():  # the trail, its WAL if any, checkpoints, anything
        if path.is_file():
            found[f"file {path.name}"] = _raw(path.read_bytes())
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position"
        ).fetchall()
        assert {t for t, _ in tables} >= {"events"}
        for table, column in tables:
            rows = con.execute(f'SELECT CAST("{column}" AS VARCHAR) FROM "{table}"').fetchall()
            found[f"{table}.{column}"] = "\n".join(r[0] for r in rows if r[0] is not None)
    finally:
        con.close()
    export = tmp_path / "export.jsonl"
    code, out, err = run_cli("export", "--db", str(db), "--format", "jsonl", "-o", str(export))
    assert code == 0, out + err
    found["export"] = export.read_text("utf-8")
    found["export (decoded)"] = json.dumps(
        [json.loads(line) for line in found["export"].splitlines()], ensure_ascii=False
    )
    return found


def _raw(data: bytes) -> str:
    return data.decode("latin-1") + "\n" + data.decode("utf-8", "replace")


def _leaks(places: dict[str, str], values) -> dict[str, list[str]]:
    return {v: [name for name, text in places.items() if v in text] for v in values} | {}


@pytest.mark.timeout(600)
def test_the_notebook_ran_and_was_recorded(places):
    records = [json.loads(line) for line in places["export"].splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds.count("op.sql") >= 6 and "op.http" in kinds and "op.shell" in kinds
    drivers = {r["payload"]["driver"] for r in records if r["kind"] == "op.sql"}
    assert drivers >= {"sqlite3", "duckdb"} | ({"psycopg"} if PG_DSN else set())
    http = next(r for r in records if r["kind"] == "op.http")
    assert http["payload"].get("request_body") and http["payload"].get("response_body"), http
    assert "‹NAME:" in json.dumps(records, ensure_ascii=False)  # masked, not dropped
    # the searches can see: text the trail keeps as it is shows in the table that holds it
    # (every column of every table is read through DuckDB, decompressed: the trail file
    # holds its records zstd-compressed, so its raw bytes show them only while in the WAL)
    # and the export; the log is the server's debug log
    control = "ORDER BY id"
    assert control in places["events.record"] and control in places["export"]
    assert "[D " in places["server log"] and "jupyter-audit: trail" in places["server log"]


@pytest.mark.timeout(600)
def test_no_customer_value_or_key_is_found_anywhere(places):
    leaked = {v: where for v, where in _leaks(places, STRUCTURED_VALUES).items() if where}
    assert leaked == {}


@pytest.mark.timeout(600)
def test_no_recognizer_value_is_found_anywhere(places):
    leaked = {v: where for v, where in _leaks(places, RECOGNIZER_VALUES).items() if where}
    assert leaked == {}
