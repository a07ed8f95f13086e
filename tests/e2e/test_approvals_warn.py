"""Under the standard token login one person holds every role, so nobody else can approve:
a risky statement runs, and the cell says why it was flagged and how to enable review (real
server, real kernel, real sqlite3 file)."""

import sqlite3

import pytest
from helpers.kernels import open_kernel
from helpers.servers import server_config


@pytest.fixture
def jp_server_config(trail_dir):
    return server_config(trail_dir / "trail.duckdb")


async def test_warn_runs_and_shows_the_warning_in_the_cell(
    jp_serverapp, jp_fetch, jp_ws_fetch, tmp_path
):
    db = tmp_path / "shop.db"
    con = sqlite3.connect(str(db))
    con.execute("create table customers (id integer)")
    con.executemany("insert into customers values (?)", [(1,), (2,)])
    con.commit()
    con.close()
    _kid, kc = await open_kernel(jp_fetch, jp_ws_fetch)
    status, out, errors = await kc.run_full(
        f"import sqlite3\nsqlite3.connect({str(db)!r}, isolation_level=None)"
        ".execute('DELETE FROM customers')"
    )
    assert status == "ok", errors
    assert "jupyter-audit warning: " in out
    assert "statement.where-required" in out
    assert "review" in out  # how to enable it
    con = sqlite3.connect(str(db))
    assert con.execute("select count(*) from customers").fetchone()[0] == 0
