"""Kernel lifecycle and saved files in the trail, with the identity that caused them; a
kernel the kernel side cannot be injected into is flagged on its session."""

import getpass
import hashlib
import json
import sys

import pytest
from helpers.kernels import open_kernel
from helpers.servers import server_config
from helpers.trail import trail_events, wait_for


@pytest.fixture
def jp_server_config(trail_dir):
    return server_config(trail_dir / "trail.duckdb")


async def test_start_interrupt_restart_shutdown(jp_serverapp, jp_fetch):
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    r = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    kid = json.loads(r.body)["id"]
    await jp_fetch("api", "kernels", kid, "interrupt", method="POST", body="")
    await jp_fetch("api", "kernels", kid, "restart", method="POST", body="")
    await jp_fetch("api", "kernels", kid, method="DELETE")
    events = await wait_for(
        audit, lambda ev: any(e["kind"] == "session.ended" and e["kernel_id"] == kid for e in ev)
    )
    mine = [(e["kind"], e["payload"]["reason"]) for e in events if e["kernel_id"] == kid]
    assert [m for m in mine if m[0].startswith("session.")] == [
        ("session.started", "start"),
        ("session.interrupted", "interrupt"),
        ("session.started", "restart"),
        ("session.ended", "shutdown"),
    ]
    started = next(e for e in events if e["kind"] == "session.started" and e["kernel_id"] == kid)
    assert started["identity"]["username"] == getpass.getuser()
    assert started["payload"]["audited"] is True and started["trace_id"] == kid


async def test_an_interrupt_follows_the_cells_requested_before_it(
    jp_serverapp, jp_fetch, jp_ws_fetch
):
    """The gateway queues `cell.requested` for seconds; an interrupt (or restart, or
    shutdown) hands the queue over first, so the trail keeps the order they happened in."""
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    audit.cell_requests.quiet = audit.cell_requests.max_wait = 3600  # nothing else flushes
    kid, client = await open_kernel(jp_fetch, jp_ws_fetch)
    assert (await client.run("x = 1"))[0] == "ok"
    await jp_fetch("api", "kernels", kid, "interrupt", method="POST", body="")
    audit.writer.flush()
    kinds = [
        kind
        for (kind,) in audit.writer.cursor()
        .execute("SELECT kind FROM events WHERE kernel_id = ? ORDER BY seq", [kid])
        .fetchall()
    ]
    assert "cell.requested" in kinds and "session.interrupted" in kinds
    assert kinds.index("cell.requested") < kinds.index("session.interrupted")
    client.ws.close()


async def test_kernel_without_the_kernel_side_is_flagged(jp_serverapp, jp_fetch, jp_data_dir):
    spec = jp_data_dir / "kernels" / "opaque"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-c", "import time; time.sleep(30)", "{connection_file}"],
                "display_name": "Not an ipykernel",
                "language": "python",
            }
        )
    )
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    r = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "opaque"}))
    kid = json.loads(r.body)["id"]
    events = trail_events(audit)
    started = next(e for e in events if e["kind"] == "session.started" and e["kernel_id"] == kid)
    assert started["flags"] == ["unaudited"] and started["payload"]["audited"] is False
    await jp_fetch("api", "kernels", kid, method="DELETE")


async def test_saved_files_are_recorded_with_their_hash(jp_serverapp, jp_fetch, jp_root_dir):
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    nb = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    await jp_fetch(
        "api",
        "contents",
        "analysis.ipynb",
        method="PUT",
        body=json.dumps({"type": "notebook", "format": "json", "content": nb}),
    )
    events = trail_events(audit)
    saved = [e for e in events if e["kind"] == "file.saved"]
    assert len(saved) == 1
    on_disk = (jp_root_dir / "analysis.ipynb").read_bytes()
    assert saved[0]["payload"]["sha256"] == hashlib.sha256(on_disk).hexdigest()
    assert saved[0]["payload"]["path"] == "analysis.ipynb"
    assert saved[0]["notebook"] == "analysis.ipynb"
    assert saved[0]["identity"]["username"] == getpass.getuser()


async def test_a_server_that_stops_ends_each_kernel_once_in_the_trail(
    jp_serverapp, jp_fetch, trail_dir, caplog, capfd
):
    """jupyter_server stops its extensions (and so closes the trail) before it shuts its
    kernels down: each running kernel's end is recorded before, once, and the later
    shutdown neither records it again nor fails on the closed trail."""
    import duckdb

    r = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    kid = json.loads(r.body)["id"]
    await jp_serverapp._cleanup()
    assert "not recorded" not in caplog.text + capfd.readouterr().err
    with duckdb.connect(str(trail_dir / "trail.duckdb"), read_only=True) as db:
        ended = db.execute(
            "SELECT CAST(record AS VARCHAR) LIKE '%server shutdown%' FROM events"
            " WHERE kind = 'session.ended' AND kernel_id = ?",
            [kid],
        ).fetchall()
    assert ended == [(True,)]
