"""Typing into a Jupyter terminal lands in the trail as op.shell lines (best effort)."""

import asyncio
import getpass
import json

import pytest
from helpers.trail import trail_events, wait_for

from jupyter_audit.server.hooks.terminals import _lines


@pytest.fixture
def jp_server_config(trail_dir):
    return {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_audit": True, "jupyter_server_terminals": True}
        },
        "AuditApp": {"db_path": str(trail_dir / "trail.duckdb")},
    }


async def test_terminal_input_is_recorded(jp_serverapp, jp_fetch, jp_ws_fetch):
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    r = await jp_fetch("api", "terminals", method="POST", body="{}")
    name = json.loads(r.body)["name"]
    ws = await jp_ws_fetch("terminals", "websocket", name)
    ws.write_message(json.dumps(["stdin", "echo hel"]))
    ws.write_message(json.dumps(["stdin", "lo\r"]))
    ws.write_message(json.dumps(["stdin", "rm -rf scratchx\x7f\r"]))
    events = await wait_for(audit, lambda ev: sum(e["kind"] == "op.shell" for e in ev) >= 2)
    shell = [e for e in events if e["kind"] == "op.shell"]
    assert [e["payload"]["command"] for e in shell] == ["echo hello", "rm -rf scratch"]
    assert all(e["identity"]["username"] == getpass.getuser() for e in shell)
    assert shell[0]["trace_id"] == f"terminal-{name}" and shell[0]["payload"]["via"] == "terminal"
    ws.close()
    await asyncio.sleep(0)
    assert len(trail_events(audit)) >= 2


def test_line_reassembly():
    class H:
        pass

    h = H()
    assert _lines(h, "ls -l") == []
    assert _lines(h, "a\x1b[D\x1b[Cb\r") == ["ls -lab"]
    assert _lines(h, "oops\x03whoami\n") == ["whoami"]


async def test_a_revoked_service_token_closes_its_terminal(jp_serverapp, jp_fetch, jp_ws_fetch):
    made = json.loads(
        (
            await jp_fetch(
                "jupyter-audit",
                "api",
                "tokens",
                method="POST",
                body=json.dumps({"service_account": "ops-bot", "owner": "ada@example.org"}),
            )
        ).body
    )
    h = {"Authorization": f"token {made['token']}"}
    r = await jp_fetch("api", "terminals", method="POST", body="{}", headers=h)
    ws = await jp_ws_fetch("terminals", "websocket", json.loads(r.body)["name"], headers=h)
    ws.write_message(json.dumps(["stdin", "echo as-bot\r"]))
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    events = await wait_for(audit, lambda ev: any(e["kind"] == "op.shell" for e in ev))
    shell = next(e for e in events if e["kind"] == "op.shell")
    assert shell["identity"]["username"] == "ops-bot"
    await jp_fetch("jupyter-audit", "api", "tokens", made["id"], method="DELETE")

    async def until_closed():
        while await ws.read_message() is not None:
            pass

    await asyncio.wait_for(until_closed(), 10)
