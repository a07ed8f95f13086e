"""The collector under a real JupyterHub: one trail for the whole Hub, out of users' reach.

A real Hub (configurable-http-proxy from npm, GenericOAuthenticator against a real OIDC
provider) runs `jupyter audit collector --db …` as a managed service; alice's and bob's
single-user servers (real jupyter-audit servers, real kernels, real DuckDB trails) forward
their trails to it with their Hub-issued server tokens. What is checked, in order, on one Hub:
both users' cells land in the collector attributed by the Hub; auditors see every trace,
users only their own servers'; a risky cell of alice's waits for bob, a reviewer, who approves
through his own server, and carol, a break-glass member, approves another alone with a
reason; forged server ids, unauthenticated calls and replays are
refused or recorded; kill -9 of the collector mid-stream and of a single-user server lose
nothing acknowledged and store nothing twice; a server that stops forwarding is recorded
as silent; a user who edits and then replaces their own trail cannot touch what the
collector holds; the collector's chain verifies at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest
import requests
from helpers.hub import Hub, Kernel, alive, descendants, find_chp
from helpers.oidc import provider_fixture
from helpers.servers import free_port, run_cli
from helpers.stores import fresh_database

from jupyter_audit.cli import main as cli_main
from jupyter_audit.server.forwarding import Forwarder

ALICE = {
    "preferred_username": "alice",
    "email": "alice@example.org",
    "groups": ["audit-auditors", "data-science"],
}
BOB = {
    "preferred_username": "bob",
    "email": "bob@example.org",
    "groups": ["data-science", "audit-reviewers"],  # decides others' approval requests
}
CAROL = {
    "preferred_username": "carol",
    "email": "carol@example.org",
    "groups": ["audit-break-glass"],  # decides alone, with a reason; reviews nothing
}
SILENT_AFTER = 8

COLLECTOR_CONFIG = """
c.JupyterHub.services = [
    {{
        "name": "jupyter-audit",
        "url": "http://127.0.0.1:{port}",
        "command": [
            {python!r}, "-m", "jupyter_audit.cli", "collector",
            *{trail!r},
            "--state-dir", "{dir}/collector-state",
            "--silent-after", "{silent}", "--max-body-bytes", "8000000",
            "--config", "{dir}/collector_config.py",
        ],
        # people sign in here with their browser to decide approvals (the Hub's OAuth)
        "oauth_no_confirm": True,
    }}
]
# a server token gets only scopes its user holds: users may call the collector
c.JupyterHub.load_roles = [
    {{"name": "user", "scopes": ["self", "access:services!service=jupyter-audit"]}},
]
c.Spawner.server_token_scopes = [
    "access:servers!server",
    "users:activity!user",
    "access:services!service=jupyter-audit",
]
c.Spawner.environment = {{
    "JUPYTER_AUDIT_COLLECTOR_URL": "http://127.0.0.1:{port}/services/jupyter-audit/",
}}
c.Spawner.args = ["--allow-root", "--AuditApp.collector_heartbeat=1"]
c.Spawner.poll_interval = 2
"""


provider = provider_fixture({"sub-alice": ALICE, "sub-bob": BOB, "sub-carol": CAROL})


@pytest.fixture(scope="module", params=["duckdb", "postgresql"])
def hub(request, provider, tmp_path_factory):
    """One Hub for the module, its collector on DuckDB (`--db`) or PostgreSQL (`--pg`)."""
    chp = find_chp()
    if chp is None:
        pytest.skip("configurable-http-proxy not found (scripts/test installs it)")
    stack = contextlib.ExitStack()
    pg = stack.enter_context(fresh_database()) if request.param == "postgresql" else None
    directory = tmp_path_factory.mktemp("collector-hub")
    (directory / "collector_config.py").write_text(
        'c.CollectorApp.break_glass_groups = ["audit-break-glass"]\n'
    )
    port = free_port()
    trail = ["--pg", pg] if pg else ["--db", str(directory / "collector.duckdb")]
    extra = COLLECTOR_CONFIG.format(
        port=port, python=sys.executable, dir=directory, silent=SILENT_AFTER, trail=trail
    )
    h = Hub(directory, provider, chp, extra_config=extra)
    h.collector_url = f"http://127.0.0.1:{port}/services/jupyter-audit/"
    h.collector_trail = trail
    try:
        yield h
    finally:
        h.stop()
        print("---- jupyterhub log (tail) ----\n" + h.log_tail(150))
        stack.close()


class Person:
    """A Hub user with a browser session and an API token of their own."""

    def __init__(self, hub: Hub, sub: str, name: str):
        self.hub, self.name = hub, name
        self.session = hub.login(sub)
        r = hub.hub_api(self.session, "POST", f"users/{name}/tokens", json={"note": "test"})
        assert r.status_code in (200, 201), r.text
        self.token = r.json()["token"]

    def collector(self, method: str, path: str, token: str | None = "own", **kw):
        headers = kw.pop("headers", {})
        token = self.token if token == "own" else token
        if token:
            headers["Authorization"] = f"token {token}"
        return requests.request(
            method, self.hub.collector_url + path, headers=headers, timeout=60, **kw
        )


def start(hub: Hub, person: Person) -> None:
    """Start the person's server and open it in their browser (the server's cookies)."""
    hub.start_server(person.session, person.name)
    hub.open(person.session, f"/user/{person.name}/lab")


@pytest.fixture(scope="module")
def alice(hub):
    p = Person(hub, "sub-alice", "alice")
    start(hub, p)
    return p


@pytest.fixture(scope="module")
def bob(hub):
    p = Person(hub, "sub-bob", "bob")
    start(hub, p)
    return p


def run_cells(hub: Hub, person: Person, codes: list[str]) -> str:
    kernel = Kernel(hub, person.session, person.name)
    try:
        for code in codes:
            assert kernel.run(code)[0] == "ok"
    finally:
        kernel.close()
    return kernel.id


def collector_records(alice: Person) -> list[dict]:
    """Every record of the collector's trail, live (alice is an auditor)."""
    r = alice.collector("GET", "api/export")
    assert r.status_code == 200, r.text
    return r.json()["records"]


def wait_records(alice: Person, predicate, timeout: float = 90) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            records = collector_records(alice)
        except (AssertionError, requests.RequestException):
            records = None  # the collector is restarting
        if records is not None and predicate(records):
            return records
        if time.monotonic() > deadline:
            kinds = [r["kind"] for r in records or []]
            raise AssertionError(f"the collector's trail never got there: {kinds[-40:]}")
        time.sleep(0.5)


def codes_of(records: list[dict], server: str) -> list[str]:
    return [
        r["payload"]["code"]
        for r in records
        if r["kind"] == "cell.requested" and (r.get("origin") or {}).get("server") == server
    ]


def no_duplicates(records: list[dict]) -> None:
    places = [
        (r["origin"]["server"], r["origin"]["trail"], r["origin"]["seq"], r["origin"]["hash"])
        for r in records
        if r.get("origin")
    ]
    assert len(places) == len(set(places)), "a forwarded record was stored twice"


def process_with_env(hub: Hub, key: str, value: str) -> tuple[int, dict]:
    """A process the Hub started whose environment has key=value, and that environment."""
    for pid in descendants(hub.proc.pid):
        try:
            raw = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        env = dict(
            item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item
        )
        if env.get(key) == value:
            return pid, env
    raise AssertionError(f"no process with {key}={value}")


def kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


# -- the tests, in order, on one Hub ----------------------------------------------------------


def test_both_users_cells_reach_the_collector_attributed_by_the_hub(hub, alice, bob):
    run_cells(hub, alice, ["a = 'alice-1'"])
    run_cells(hub, bob, ["b = 'bob-1'"])
    records = wait_records(
        alice,
        lambda rs: (
            "a = 'alice-1'" in codes_of(rs, "alice/") and "b = 'bob-1'" in codes_of(rs, "bob/")
        ),
    )
    for r in records:
        if r["kind"] == "cell.requested" and r.get("origin"):
            owner = r["origin"]["owner"]
            assert r["origin"]["server"] == f"{owner}/"
            assert r["identity"]["username"] == owner  # the server's own record of who ran it
    no_duplicates(records)
    # the collector's own pseudonym key is in its trail; the servers' keys come wrapped
    assert any(r["kind"] == "masking.key_rotated" and not r.get("origin") for r in records)
    wrapped = [r["payload"]["kind"] for r in records if r["kind"] == "forward.wrapped"]
    assert "masking.key_rotated" in wrapped


def test_auditors_see_every_trace_users_only_their_own_servers(hub, alice, bob):
    traces = alice.collector("GET", "api/traces").json()["traces"]
    mine = bob.collector("GET", "api/traces").json()["traces"]
    assert mine and {t["trace_id"] for t in mine} < {t["trace_id"] for t in traces}
    records = collector_records(alice)
    by_server = {
        r["trace_id"]: r["origin"]["server"] for r in records if r.get("origin") and r["trace_id"]
    }
    assert {by_server[t["trace_id"]] for t in mine} == {"bob/"}
    alices = next(t for t, s in by_server.items() if s == "alice/")
    r = bob.collector("GET", f"api/traces/{alices}")
    assert r.status_code == 403, r.text
    assert "another user's server" in r.json()["message"]
    bobs = mine[0]["trace_id"]
    assert bob.collector("GET", f"api/traces/{bobs}").status_code == 200
    r = alice.collector("GET", f"api/traces/{bobs}")
    assert r.status_code == 200 and r.json()["events"]
    assert bob.collector("GET", "api/export").status_code == 403
    records = wait_records(
        alice,
        lambda rs: any(x["kind"] == "trail.accessed" and x["trace_id"] == bobs for x in rs),
    )


def sign_in_at_collector(hub, person: Person) -> str:
    """The person's browser signs in at the collector (the Hub's OAuth, through the proxy)
    and reads its XSRF token, as the panel does."""
    base = hub.url + "/services/jupyter-audit/"
    r = person.session.get(base + "jupyter-audit/sign-in", timeout=60)
    assert r.status_code == 200 and "Signed in" in r.text, (r.status_code, r.text[:300])
    r = person.session.get(base + "jupyter-audit/api/session", timeout=60)
    assert r.status_code == 200 and r.json()["username"] == person.name, r.text
    return r.json()["xsrf_token"]


KERNEL_DECIDES = """
import json, os, urllib.request, urllib.error
token = os.environ["JUPYTERHUB_API_TOKEN"]
out = {{}}
for name, url in (
    ("collector", {collector!r} + "jupyter-audit/api/approvals/{rid}"),
    ("server", os.environ["JUPYTERHUB_SERVICE_URL"].rstrip("/") + "/jupyter-audit/api/approvals/{rid}"),
    ("sign-in", {public!r} + "jupyter-audit/sign-in"),
    # a token of bob's own, made with his server's: the Hub refuses
    ("new-token", os.environ["JUPYTERHUB_API_URL"] + "/users/bob/tokens"),
    ("scopes", os.environ["JUPYTERHUB_API_URL"] + "/user"),
):
    post = name not in ("sign-in", "scopes")
    req = urllib.request.Request(url, data=json.dumps({{"decision": "approve"}}).encode() if post else None, headers={{"Authorization": "token " + token, "Content-Type": "application/json"}})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            out[name] = (r.status, r.read().decode()[:3000])
    except urllib.error.HTTPError as e:
        out[name] = (e.code, e.read().decode()[:300])
print(json.dumps(out))
"""


@contextlib.contextmanager
def bulk_delete(hub: Hub, person: Person, name: str, rows: int):
    """A SQLite database `name` of `rows` customers, and a cell of `person`'s that deletes
    them all (a risky operation: it waits for a decision), running in a thread while the
    block runs: yields (the database, what the cell returns once it ran); the cell is
    waited for and its kernel closed when the block ends."""
    shop = hub.dir / name
    con = sqlite3.connect(shop)
    con.execute("CREATE TABLE customers (id INTEGER)")
    con.executemany("INSERT INTO customers VALUES (?)", [(i,) for i in range(1, rows + 1)])
    con.commit()
    con.close()
    code = (
        f"import sqlite3\ncon = sqlite3.connect({str(shop)!r})\n"
        "con.execute('DELETE FROM customers')\ncon.commit()\n"
        "print('left', con.execute('SELECT count(*) FROM customers').fetchone()[0])"
    )
    kernel = Kernel(hub, person.session, person.name)
    ran: dict = {}
    cell = threading.Thread(target=lambda: ran.update(result=kernel.run(code, timeout=240)))
    cell.start()
    try:
        yield shop, ran
    finally:
        cell.join(240)
        kernel.close()


def test_a_risky_cell_waits_until_a_reviewer_approves_through_his_own_server(
    hub, alice, bob, capsys
):
    """Approvals through the collector: alice's DELETE waits; bob (a reviewer at the Hub)
    sees the Hub's one queue through his own server; code in his own kernel, with his
    server's token, decides nothing (at the collector, through his server, or by signing in
    at the collector: refused, recorded); alice cannot decide her own; bob approves in his
    browser, signed in at the collector; the cell completes, and the approval is in her
    cell's trace at the collector."""
    with bulk_delete(hub, alice, "shop.db", 3) as (shop, ran):

        def api(person: Person, method: str, path: str, **kw):
            base = f"/user/{person.name}/"
            headers = {"X-XSRFToken": hub.xsrf(person.session, base)}
            return person.session.request(
                method,
                hub.url + base + "jupyter-audit/api/" + path,
                headers=headers,
                timeout=60,
                **kw,
            )

        deadline = time.monotonic() + 120
        while True:
            r = api(bob, "GET", "approvals?state=pending")
            assert r.status_code == 200, r.text
            if r.json()["approvals"]:
                break
            assert time.monotonic() < deadline, "alice's request never reached the queue"
            time.sleep(0.5)
        request = r.json()["approvals"][0]
        assert request["requester"] == "alice" and "DELETE" in request["statement"]
        rid = request["id"]
        assert "result" not in ran and sqlite3.connect(shop).execute(
            "SELECT count(*) FROM customers"
        ).fetchone() == (3,)
        r = api(alice, "POST", f"approvals/{rid}", json={"decision": "approve"})
        assert r.status_code == 403 and "decided at the collector" in r.json()["message"]
        r = alice.collector("POST", f"jupyter-audit/api/approvals/{rid}", json={"decision": "deny"})
        assert r.status_code == 403, r.text
        # a notebook alice hands bob, run in his own kernel: his server's token decides nothing
        public = hub.url + "/services/jupyter-audit/"
        attack = KERNEL_DECIDES.format(collector=hub.collector_url, rid=rid, public=public)
        bobs = Kernel(hub, bob.session, "bob")
        try:
            status, out = bobs.run(attack, timeout=120)
        finally:
            bobs.close()
        assert status == "ok", out
        tried = json.loads(out.strip().splitlines()[-1])
        assert tried["collector"][0] == 403, tried
        assert "does not decide" in tried["collector"][1], tried
        assert tried["server"][0] == 403, tried
        # the Hub's OAuth takes no token: no session at the collector for the kernel
        assert "Signed in" not in tried["sign-in"][1], tried
        assert tried["new-token"][0] == 403, tried
        # what the Hub answers for a server's token names the server; for bob's own, none
        server_scopes = json.loads(tried["scopes"][1])["scopes"]
        assert "access:servers!server=bob/" in server_scopes, server_scopes
        own = hub.hub_api(
            bob.session, "GET", "user", headers={"Authorization": f"token {bob.token}"}
        )
        assert own.status_code == 200, own.text
        assert not [x for x in own.json()["scopes"] if x.startswith("access:servers!server=")]
        r = api(bob, "GET", f"approvals/{rid}")
        assert r.status_code == 200 and r.json()["state"] == "pending", r.text
        # bob decides in his browser, signed in at the collector (the panel's way)
        xsrf = sign_in_at_collector(hub, bob)
        r = bob.session.post(
            public + f"jupyter-audit/api/approvals/{rid}",
            json={"decision": "approve", "reason": "ok"},
            headers={"X-XSRFToken": xsrf},
            timeout=60,
        )
        assert r.status_code == 200 and r.json()["state"] == "approved", r.text
        # bob's own API token (the CLI's) passes the server-token gate: decided already, 409
        r = bob.collector(
            "POST",
            f"jupyter-audit/api/approvals/{rid}",
            json={"decision": "deny", "reason": "late"},
        )
        assert r.status_code == 409, r.text
        capsys.readouterr()
        args = ["approvals", "deny", str(rid), "--reason", "late"]
        assert cli_main([*args, "--url", hub.collector_url, "--token", bob.token]) == 2
        assert "does not decide" not in capsys.readouterr().err
    assert ran["result"] == ("ok", "left 0\n")
    records = wait_records(
        alice,
        lambda rs: (
            any(x["kind"] == "approval.executed" for x in rs)
            and any(
                x["kind"] == "cell.requested" and "DELETE FROM customers" in x["payload"]["code"]
                for x in rs
            )
        ),
    )
    executed = next(x for x in records if x["kind"] == "approval.executed")
    cell_record = next(
        x
        for x in records
        if x["kind"] == "cell.requested" and "DELETE FROM customers" in x["payload"]["code"]
    )
    assert executed["trace_id"] == cell_record["trace_id"]
    assert cell_record["origin"]["server"] == "alice/"
    decided = next(x for x in records if x["kind"] == "approval.decided")
    assert decided["identity"]["username"] == "bob"
    refused = [
        x
        for x in records
        if x["kind"] == "security.rejected" and "does not decide" in json.dumps(x["payload"])
    ]
    assert refused and refused[0]["identity"]["username"] == "bob"


def test_a_break_glass_member_approves_alone_with_a_reason_signed_in_at_the_collector(hub, alice):
    """carol, in the Hub group `audit-break-glass` (c.CollectorApp.break_glass_groups) and no
    reviewer, has no server: she sees alice's waiting DELETE with her own Hub token, signs in
    at the collector and approves it alone, only with a reason; the decision is flagged."""
    carol = Person(hub, "sub-carol", "carol")
    r = carol.collector("GET", "jupyter-audit/api/me")
    assert r.status_code == 200 and "break-glass" in r.json()["roles"], r.text
    assert "reviewer" not in r.json()["roles"]
    with bulk_delete(hub, alice, "glass.db", 2) as (shop, ran):
        deadline = time.monotonic() + 120
        while True:
            r = carol.collector("GET", "jupyter-audit/api/approvals?state=pending")
            assert r.status_code == 200, r.text
            if r.json()["approvals"]:
                break
            assert time.monotonic() < deadline, "alice's request never reached the queue"
            time.sleep(0.5)
        (request,) = r.json()["approvals"]
        assert request["requester"] == "alice"
        path = hub.url + f"/services/jupyter-audit/jupyter-audit/api/approvals/{request['id']}"
        xsrf = sign_in_at_collector(hub, carol)
        r = carol.session.post(
            path, json={"decision": "approve"}, headers={"X-XSRFToken": xsrf}, timeout=60
        )
        assert r.status_code == 400 and "needs a reason" in r.json()["message"], r.text
        r = carol.session.post(
            path,
            json={"decision": "approve", "reason": "incident 4711"},
            headers={"X-XSRFToken": xsrf},
            timeout=60,
        )
        assert r.status_code == 200 and r.json()["state"] == "approved", r.text
        assert r.json()["decisions"][0]["break_glass"] is True
    assert ran["result"] == ("ok", "left 0\n")
    records = wait_records(
        alice,
        lambda rs: any(
            x["kind"] == "approval.decided" and (x.get("identity") or {}).get("username") == "carol"
            for x in rs
        ),
    )
    decided = [
        x
        for x in records
        if x["kind"] == "approval.decided" and (x.get("identity") or {}).get("username") == "carol"
    ]
    assert [(x["payload"]["break_glass"], x["payload"]["reason"]) for x in decided] == [
        (True, "incident 4711")
    ]


def test_each_users_own_server_reads_the_hubs_trail_as_the_collector_allows(hub, alice, bob):
    """The panel's reads through a user's own server (collector_url): alice (an auditor by
    her Hub groups) sees both users' traces, bob only his, and another's trace is the
    collector's 403, passed on by bob's server."""

    def api(person: Person, path: str, **params):
        url = f"{hub.url}/user/{person.name}/jupyter-audit/api/{path}"
        return person.session.get(url, params=params, timeout=60)

    me = api(alice, "me").json()
    assert me["source"] == "collector" and me["username"] == "alice"
    assert "auditor" in me["roles"] and "alice/" in me["servers"]
    assert "auditor" not in api(bob, "me").json()["roles"]  # bob reviews approvals only
    everyone = api(alice, "traces", limit=500).json()["traces"]
    assert {t["owner"] for t in everyone} == {"alice", "bob"}
    assert all(t["server"] == f"{t['owner']}/" for t in everyone)
    mine = api(bob, "traces", limit=500).json()["traces"]
    assert mine and {t["owner"] for t in mine} == {"bob"}
    alices = next(t["trace_id"] for t in everyone if t["owner"] == "alice")
    r = api(bob, f"traces/{alices}")
    assert r.status_code == 403, r.text
    assert "another user's server" in r.json()["message"]
    assert api(bob, "traces", user="alice").status_code == 403
    page = api(alice, f"traces/{mine[0]['trace_id']}")
    assert page.status_code == 200 and page.json()["trace"]["owner"] == "bob"
    # the panel's search box through each one's own server, on either store: bob's cell
    # `b = 'bob-1'` by its words, alice's `a = 'alice-1'` never in bob's answer
    found = api(bob, "traces", q="BOB 1", limit=500)
    assert found.status_code == 200, found.text
    assert found.json()["traces"] and {t["owner"] for t in found.json()["traces"]} == {"bob"}
    assert {t["owner"] for t in api(bob, "traces", q="alice 1").json()["traces"]} <= {"bob"}
    hers = api(alice, "traces", q="alice 1", limit=500).json()["traces"]
    assert "alice" in {t["owner"] for t in hers}
    cell = api(bob, f"traces/{found.json()['traces'][0]['trace_id']}", q="bob", fold="0")
    assert cell.status_code == 200 and cell.json()["events"], cell.text
    r = api(bob, "export")
    assert r.status_code == 200
    assert {rec["trace_id"] for rec in r.json()["records"]} <= {t["trace_id"] for t in mine}
    # alice's view of bob's trace through her server is in the collector's trail, as hers
    wait_records(
        alice,
        lambda rs: any(
            x["kind"] == "trail.accessed"
            and x["trace_id"] == mine[0]["trace_id"]
            and x["identity"]["username"] == "alice"
            for x in rs
        ),
    )


def test_forged_unauthenticated_and_replayed_requests_are_refused_or_recorded(hub, alice, bob):
    _pid, env = process_with_env(hub, "JUPYTERHUB_USER", "alice")
    server_token = env["JUPYTERHUB_API_TOKEN"]
    # alice's server token, claiming bob's server
    r = alice.collector("GET", "api/forward/state", token=server_token, params={"server": "bob/"})
    assert r.status_code == 403 and "alice/" in r.json()["message"]
    body = {"server": "bob/", "trail": "t-1", "records": [], "backlog": 0, "stopping": False}
    r = alice.collector("POST", "api/forward", token=server_token, json=body)
    assert r.status_code == 403
    # alice's own API token (which names no server) claiming bob's
    r = alice.collector("POST", "api/forward", json=body)
    assert r.status_code == 403 and "Hub user 'alice'" in r.json()["message"]
    # no token, a token the Hub does not know, a malformed batch
    assert alice.collector("GET", "api/forward/state", token=None).status_code == 401
    assert alice.collector("GET", "api/traces", token="not-a-token").status_code == 403
    r = alice.collector("POST", "api/forward", token=server_token, data=b"{not json")
    assert r.status_code == 400 and "not JSON" in r.json()["message"]
    r = alice.collector("POST", "api/forward", token=server_token, data=b" " * 8_000_001)
    assert r.status_code == 413
    # the server's own state, with its own token
    state = alice.collector("GET", "api/forward/state", token=server_token).json()
    assert state["server"] == "alice/" and state["seq"] > 0
    records = wait_records(
        alice,
        lambda rs: (
            sum(x["kind"] == "security.rejected" and "bob/" in x["payload"]["source"] for x in rs)
            >= 3
        ),
    )
    reasons = " ".join(x["payload"]["reason"] for x in records if x["kind"] == "security.rejected")
    assert "not JSON" in reasons and "a Hub token is required" in reasons
    assert server_token not in json.dumps(records)  # no token in the trail


def test_kill_9_of_the_collector_mid_stream_loses_nothing_and_stores_nothing_twice(hub, alice, bob):
    pid, _ = process_with_env(hub, "JUPYTERHUB_SERVICE_NAME", "jupyter-audit")
    kernel = Kernel(hub, alice.session, "alice")
    try:
        for i in range(3):
            assert kernel.run(f"k = 'before-{i}'")[0] == "ok"
        kill9(pid)
        # the servers keep recording while the collector is away
        for i in range(3):
            assert kernel.run(f"k = 'during-{i}'")[0] == "ok"
        assert run_cells(hub, bob, ["b = 'bob-during'"])
    finally:
        kernel.close()
    # the Hub restarts its managed service; the servers catch up
    want = [f"k = 'before-{i}'" for i in range(3)] + [f"k = 'during-{i}'" for i in range(3)]
    records = wait_records(
        alice,
        lambda rs: (
            set(want) <= set(codes_of(rs, "alice/")) and "b = 'bob-during'" in codes_of(rs, "bob/")
        ),
        timeout=120,
    )
    no_duplicates(records)
    for server in ("alice/", "bob/"):
        seqs = sorted(
            r["origin"]["seq"] for r in records if (r.get("origin") or {}).get("server") == server
        )
        assert seqs == list(range(1, len(seqs) + 1)), f"{server}: a gap"


def test_a_killed_server_falls_silent_then_resumes_without_loss(hub, alice, bob):
    run_cells(hub, bob, ["b = 'bob-before-kill'"])
    pid, _ = process_with_env(hub, "JUPYTERHUB_USER", "bob")
    wait_records(alice, lambda rs: "b = 'bob-before-kill'" in codes_of(rs, "bob/"))
    kill9(pid)  # no last batch, no `stopping`
    records = wait_records(
        alice,
        lambda rs: any(
            r["kind"] == "forward.silent" and r["payload"]["server"] == "bob/" for r in rs
        ),
        timeout=SILENT_AFTER + 60,
    )
    hub.wait_server(bob.session, "bob", ready=False, timeout=60)
    start(hub, bob)
    run_cells(hub, bob, ["b = 'bob-after-restart'"])
    records = wait_records(
        alice,
        lambda rs: (
            "b = 'bob-after-restart'" in codes_of(rs, "bob/")
            and any(r["kind"] == "forward.resumed" for r in rs)
        ),
    )
    no_duplicates(records)
    seqs = sorted(
        r["origin"]["seq"] for r in records if (r.get("origin") or {}).get("server") == "bob/"
    )
    assert seqs == list(range(1, len(seqs) + 1))
    assert not any(r["kind"] in ("forward.gap", "forward.rewrite") for r in records)


def test_a_user_editing_then_replacing_their_own_trail_cannot_touch_the_collectors(hub, alice, bob):
    run_cells(hub, alice, ["secret_plan = 'original'"])
    wait_records(alice, lambda rs: "secret_plan = 'original'" in codes_of(rs, "alice/"))
    hub.stop_server(alice.session, "alice")
    trail = hub.trail("alice")
    # a replay of old records with alice's own token, from her (stopped) trail
    con = duckdb.connect(str(trail), read_only=True)
    try:

        class ReadOnly:
            trail_id = con.execute("SELECT value FROM meta WHERE key = 'trail_id'").fetchone()[0]

            @staticmethod
            def cursor():
                return con.cursor()

        old = Forwarder(ReadOnly(), hub.collector_url, None).read_after(2)[:3]
    finally:
        con.close()
    before = len(collector_records(alice))
    body = {"server": "alice/", "trail": ReadOnly.trail_id, "records": old, "backlog": 0}
    r = alice.collector("POST", "api/forward", json=body)
    assert r.status_code == 200 and r.json() == {"acked": old[-1]["seq"], "duplicates": 3}
    records = collector_records(alice)
    assert len([x for x in records if x.get("origin")]) == len(
        [x for x in records[:before] if x.get("origin")]
    )
    assert any(
        "replayed batch" in x["payload"].get("reason", "")
        for x in records
        if x["kind"] == "security.rejected"
    )

    # the user edits their own file (the cell they ran now reads otherwise) and cuts its tail
    con = duckdb.connect(str(trail))
    try:
        rows = con.execute(
            "SELECT seq, record FROM events WHERE kind = 'cell.requested'"
        ).fetchall()
        [(seq, rec)] = [(s, bytes(r)) for s, r in rows if b"secret_plan" in bytes(r)]
        edited = rec.replace(b"'original'", b"'harmless'")
        con.execute("UPDATE events SET record = ? WHERE seq = ?", [edited, seq])
        con.execute("DELETE FROM events WHERE seq > (SELECT max(seq) - 3 FROM events)")
    finally:
        con.close()
    start(hub, alice)
    # its own server says the trail was damaged; the collector kept the original
    records = wait_records(
        alice,
        lambda rs: any(
            r["kind"] == "trail.integrity"
            and r["payload"]["ok"] is False
            and (r.get("origin") or {}).get("server") == "alice/"
            for r in rs
        ),
    )
    assert "secret_plan = 'original'" in codes_of(records, "alice/")
    assert "secret_plan = 'harmless'" not in codes_of(records, "alice/")
    no_duplicates(records)
    # forwarding went on after the damage: nothing was refused as not proving itself
    assert not any(
        "hash is not" in r["payload"]["reason"] for r in records if r["kind"] == "security.rejected"
    )

    # then replaces it with a new, empty trail
    hub.stop_server(alice.session, "alice")
    for path in trail.parent.glob("alice.duckdb*"):
        path.unlink()
    start(hub, alice)
    records = wait_records(
        alice,
        lambda rs: any(
            r["kind"] == "forward.rewrite" and r["payload"].get("previous_trail") for r in rs
        ),
    )
    assert "secret_plan = 'original'" in codes_of(records, "alice/")
    no_duplicates(records)


def test_the_collectors_trail_verifies(hub, alice, bob):
    hub.stop()  # stops the servers (their last batches, `stopping`) and the collector
    state = hub.dir / "collector-state"
    checkpoints = ["--checkpoints", str(state / "collector.checkpoints")]
    pubkey = ["--pubkey", str(state / "signing-key.pem.pub")]
    code, out, err = run_cli("verify", *hub.collector_trail, *checkpoints, *pubkey)
    assert code == 0, out + err
    assert state.stat().st_mode & 0o777 == 0o700
    for key in ("signing-key.pem", "masking.key"):
        assert (state / key).stat().st_mode & 0o777 == 0o600
