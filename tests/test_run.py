"""`jupyter audit run`: a notebook executed through a real server's kernel API, as a real
process, with a real kernel; every cell lands in the trail attributed to the token's identity."""

import asyncio
import getpass
import json
import re
import socket

import nbformat
import pytest
from helpers.notebooks import write_notebook
from helpers.servers import run_cli, server_config
from helpers.trail import trail_events, wait_for


@pytest.fixture
def jp_server_config(trail_dir):
    return server_config(trail_dir / "trail.duckdb")


@pytest.fixture
def live(jp_serverapp, jp_fetch, jp_http_port, jp_base_url):
    """(url, token, audit) of the running server; jp_fetch brings up its HTTP listener."""
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
    return url, jp_serverapp.identity_provider.token, jp_serverapp.web_app.settings["jupyter_audit"]


async def audit_run(*args):
    """`jupyter audit run ARGS` as its own process while this test's loop keeps serving."""
    return await asyncio.to_thread(run_cli, "run", *args)


PRINT_CELL = """from IPython.display import clear_output, display
print('scratch')
clear_output(wait=True)
print('hello')
h = display('first', display_id=True)
h.update('second')"""

SQL_CELL = """import sqlite3
con = sqlite3.connect(':memory:')
con.execute('CREATE TABLE loans (id INTEGER, amount REAL)')
con.execute('INSERT INTO loans VALUES (1, 1200.0)')
print(con.execute('SELECT count(*) FROM loans').fetchone()[0])"""


async def test_a_notebook_runs_attributed_to_the_token_identity(live, tmp_path, monkeypatch):
    url, token, audit = live
    src = tmp_path / "job.ipynb"
    nb = write_notebook(src, PRINT_CELL, SQL_CELL, "!echo hi", markdown_first=True)
    ids = [c.id for c in nb.cells if c.cell_type == "code"]
    monkeypatch.setenv("JUPYTER_AUDIT_TOKEN", token)  # not on the command line, not in `ps`
    code, out, err = await audit_run(str(src), "--url", url)
    assert code == 0, err
    assert token not in out + err
    kernel_id = re.search(r"in kernel (\S+) \(trace \1\)", out).group(1)
    dest = tmp_path / "job.run.ipynb"  # the default output, beside the input
    assert str(dest) in out and "ran 3 of 3 code cell(s)" in out

    ran = nbformat.read(str(dest), as_version=4)
    cells = [c for c in ran.cells if c.cell_type == "code"]
    assert [c.execution_count for c in cells] == [1, 2, 3]
    first = cells[0].outputs  # clear_output(wait=True) dropped 'scratch'; the display updated
    assert [o.output_type for o in first] == ["stream", "display_data"]
    assert first[0].text == "hello\n" and first[1].data["text/plain"] == "'second'"
    assert cells[1].outputs[0].text.strip() == "1"
    assert "hi" in cells[2].outputs[0].text
    assert ran.metadata["jupyter_audit"]["run"]["trace_id"] == kernel_id
    assert ran.metadata["jupyter_audit"]["run"]["status"] == "ok"

    events = await wait_for(
        audit,
        lambda ev: (
            any(e["kind"] == "session.ended" and e["trace_id"] == kernel_id for e in ev)
            and any(e["kind"] == "op.shell" for e in ev)
            and sum(e["kind"] == "cell.finished" for e in ev) >= 3
        ),
    )
    mine = [e for e in events if e["trace_id"] == kernel_id]
    kinds = [e["kind"] for e in mine]
    assert kinds[0] == "session.started" and "session.ended" in kinds
    requested = [e for e in mine if e["kind"] == "cell.requested"]
    assert [e["payload"]["cell_id"] for e in requested] == ids
    for e in requested:
        assert e["identity"]["username"] == getpass.getuser()
        assert e["identity"]["auth_method"] == "token"
        assert e["notebook"] == "job.ipynb"
    sql = [e for e in mine if e["kind"] == "op.sql"]
    assert [e["payload"]["statement"].split()[0] for e in sql] == ["CREATE", "INSERT", "SELECT"]
    assert {e["msg_id"] for e in sql} == {requested[1]["msg_id"]}  # linked to their cell
    shell = [e for e in mine if e["kind"] == "op.shell"]
    assert shell and all(e["msg_id"] == requested[2]["msg_id"] for e in shell)
    assert "unattributed" not in json.dumps([e.get("flags") for e in mine])

    code, out, err = await asyncio.to_thread(run_cli, "verify", "--url", url, "--token", token)
    assert code == 0, out + err


async def test_a_failing_cell_stops_the_run(live, tmp_path):
    url, token, audit = live
    src = tmp_path / "broken.ipynb"
    nb = write_notebook(src, "x = 1", "x / 0", "print('never')")
    dest = tmp_path / "out" / "result.ipynb"
    dest.parent.mkdir()
    code, out, err = await audit_run(str(src), "--url", url, "--token", token, "-o", str(dest))
    assert code == 1, out + err
    assert f"cell index 1 (id {nb.cells[1].id}) failed: ZeroDivisionError: division by zero" in err
    ran = nbformat.read(str(dest), as_version=4)
    assert ran.cells[0].execution_count == 1 and ran.cells[0].outputs == []
    assert ran.cells[1].outputs[0].output_type == "error"
    assert ran.cells[1].outputs[0].ename == "ZeroDivisionError"
    assert ran.cells[2].execution_count is None and ran.cells[2].outputs == []  # not run
    assert ran.metadata["jupyter_audit"]["run"]["status"] == "failed"
    kernel_id = ran.metadata["jupyter_audit"]["run"]["kernel_id"]
    events = await wait_for(
        audit,
        lambda ev: any(e["kind"] == "session.ended" and e["trace_id"] == kernel_id for e in ev),
    )
    codes = [e["payload"]["code"] for e in events if e["kind"] == "cell.requested"]
    assert codes == ["x = 1", "x / 0"]


async def test_a_cell_over_its_timeout_is_interrupted(live, tmp_path):
    url, token, audit = live
    src = tmp_path / "slow.ipynb"
    write_notebook(src, "import time\ntime.sleep(60)", "print('never')")
    code, out, err = await audit_run(str(src), "--url", url, "--token", token, "--timeout", "2")
    assert code == 1, out + err
    assert "CellTimeoutError" in err
    ran = nbformat.read(str(tmp_path / "slow.run.ipynb"), as_version=4)
    enames = [o.ename for o in ran.cells[0].outputs if o.output_type == "error"]
    assert "KeyboardInterrupt" in enames and enames[-1] == "CellTimeoutError"
    assert ran.cells[1].outputs == []
    kernel_id = ran.metadata["jupyter_audit"]["run"]["kernel_id"]
    events = await wait_for(
        audit,
        lambda ev: any(e["kind"] == "session.ended" and e["trace_id"] == kernel_id for e in ev),
    )
    interrupted = [e for e in events if e["kind"] == "session.interrupted"]
    assert [e["trace_id"] for e in interrupted] == [kernel_id]
    assert interrupted[0]["identity"]["username"] == getpass.getuser()  # the runner did it


async def test_a_wrong_token_is_refused_clearly(live, tmp_path):
    url, _token, audit = live
    src = tmp_path / "job.ipynb"
    write_notebook(src, "print(1)")
    code, out, err = await audit_run(str(src), "--url", url, "--token", "not-the-token")
    assert code == 2, out + err
    assert "the server refused the token (HTTP 403)" in err
    assert "not-the-token" not in out + err
    assert not (tmp_path / "job.run.ipynb").exists()
    assert not any(e["kind"] == "cell.requested" for e in trail_events(audit))


def test_usage_errors_exit_2(tmp_path):
    src = tmp_path / "job.ipynb"
    code, _out, err = run_cli(
        "run", str(tmp_path / "missing.ipynb"), "--url", "http://x", "--token", "t"
    )
    assert code == 2 and "missing.ipynb: no such file" in err
    src.write_text("not json")
    code, _out, err = run_cli("run", str(src), "--url", "http://x", "--token", "t")
    assert code == 2 and "not a Jupyter notebook" in err
    write_notebook(src, "print(1)")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _out, err = run_cli("run", str(src), "--url", f"http://127.0.0.1:{port}", "--token", "t")
    assert code == 2 and f"cannot reach http://127.0.0.1:{port}" in err
