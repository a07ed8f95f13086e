"""Approvals through the Hub's collector, end to end in one process: alice's real
jupyter_server (`helpers.collector.owners_server_config` with `HubUserProvider`, whose
header sign-in needs no XSRF token) asking the collector's web app
(`helpers.collector.CollectorWeb`) over a real trail store (`collector_store`: DuckDB, and
PostgreSQL with JUPYTER_AUDIT_TEST_PG_DSN), real kernels deleting from a real SQLite table
(`shop`, `cell_code`), and calls to the collector with a Hub token (`at_hub`) or a browser
session (`in_browser`).

The fixtures are used by assigning them in a test module (`shop = hub_approvals.shop`)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import pytest
from jupyter_server.auth.identity import IdentityProvider, User
from tornado.httpclient import AsyncHTTPClient

from helpers.kernels import open_kernel
from helpers.trail import writer_events

DELETE = "DELETE FROM customers"


class HubUserProvider(IdentityProvider):
    """The single-user server's sign-in under JupyterHub: the Hub user named by X-Test-User
    (JupyterHub's own provider needs a Hub; what matters here is auth_method `jupyterhub`)."""

    async def get_user(self, handler):
        name = handler.request.headers.get("X-Test-User")
        if name not in ("alice", "bob", "erin"):
            return None
        handler._token_authenticated = True
        user = User(username=name, name=name)
        user.audit_identity = {
            "username": name,
            "groups": ["data-science"],
            "auth_method": "jupyterhub",
        }
        return user


@pytest.fixture(params=["duckdb", "pg"])
def collector_store(request, writer_at):
    """The collector's trail store: DuckDB, then PostgreSQL (skipped without its DSN)."""
    if request.param == "duckdb":
        return writer_at("collector")
    return request.getfixturevalue("pg").make()


@pytest.fixture
def shop(tmp_path):
    """A SQLite database whose `customers` table holds 3 rows."""
    path = tmp_path / "shop.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE customers (id INTEGER, email TEXT)")
    con.executemany("INSERT INTO customers VALUES (?, ?)", [(i, f"c{i}@x.org") for i in range(3)])
    con.commit()
    con.close()
    return path


def rows(shop) -> int:
    con = sqlite3.connect(shop)
    try:
        return con.execute("SELECT count(*) FROM customers").fetchone()[0]
    finally:
        con.close()


def cell_code(shop) -> str:
    return (
        "import sqlite3\n"
        f"con = sqlite3.connect({str(shop)!r})\n"
        f"con.execute({DELETE!r})\n"
        "con.commit()\n"
        "print('left', con.execute('SELECT count(*) FROM customers').fetchone()[0])\n"
    )


async def at_hub(hub, token, method, path, body=None, params=""):
    """(status, JSON) of a call to the collector with a Hub token."""
    r = await AsyncHTTPClient().fetch(
        hub.url + path + params,
        method=method,
        body=json.dumps(body) if body is not None else (b"" if method == "POST" else None),
        headers={"Authorization": f"token {token}"},
        raise_error=False,
        request_timeout=60,
    )
    return r.code, json.loads(r.body) if r.body else None


async def in_browser(hub, method, path, cookie="", body=None, headers=None):
    """(status, JSON, Set-Cookie values) of a browser's call to the collector: cookies, no
    Authorization header."""
    r = await AsyncHTTPClient().fetch(
        hub.url + path,
        method=method,
        body=json.dumps(body) if body is not None else (b"" if method == "POST" else None),
        headers={**({"Cookie": cookie} if cookie else {}), **(headers or {})},
        raise_error=False,
        request_timeout=60,
    )
    return r.code, json.loads(r.body) if r.body else None, r.headers.get_list("Set-Cookie")


async def pending_request(hub, token="bob-token", timeout=60) -> dict:
    """The request waiting at the collector, as `token`'s person sees the queue (a reviewer
    sees every server's)."""
    deadline = time.monotonic() + timeout
    while True:
        code, body = await at_hub(hub, token, "GET", "jupyter-audit/api/approvals?state=pending")
        assert code == 200, body
        if body["approvals"]:
            return body["approvals"][0]
        assert time.monotonic() < deadline, "no request reached the collector"
        await asyncio.sleep(0.2)


async def start_cell(jp_fetch, jp_ws_fetch, shop, who="alice"):
    """A kernel of alice's server, `who` running the DELETE in it: (kernel id, client, the
    cell's task)."""
    kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch, headers={"X-Test-User": who})
    task = asyncio.create_task(client.run_full(cell_code(shop), timeout=120))
    return kernel_id, client, task


def collector_events(hub) -> list[dict]:
    return writer_events(hub.approvals.recorder.writer)


async def wait_collector(hub, predicate, timeout=60) -> list[dict]:
    """The collector's records once `predicate` holds for them."""
    deadline = time.monotonic() + timeout
    while True:
        events = await asyncio.to_thread(collector_events, hub)
        if predicate(events):
            return events
        assert time.monotonic() < deadline, [e["kind"] for e in events][-30:]
        await asyncio.sleep(0.3)


def rejections(events, text) -> list[dict]:
    return [e for e in events if e["kind"] == "security.rejected" and text in json.dumps(e)]
