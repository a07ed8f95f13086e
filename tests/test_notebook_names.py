"""A trace knows its notebook as soon as a session names it, follows renames through the
real sessions and contents APIs (`session.renamed`, by whom), and exports by notebook
select every record of each trace that ever carried the name, old or new."""

import json

import pytest
from helpers.kernels import open_kernel
from helpers.servers import server_config
from helpers.sessions import ADA, ALICE, BOB, call, open_session, save
from helpers.trail import trail_events, wait_for
from tornado.httpclient import HTTPClientError

from jupyter_audit.store import queries


@pytest.fixture
def jp_server_config(trail_dir):
    return server_config(
        trail_dir / "trail.duckdb",
        server={"identity_provider_class": "helpers.identity.HeaderIdentityProvider"},
    )


def summary(audit, kid):
    trail_events(audit)  # flushed
    return queries.get_trace_summary(audit.writer.cursor(), kid)


def renames(audit, kid):
    return [
        e for e in trail_events(audit) if e["kind"] == "session.renamed" and e["trace_id"] == kid
    ]


async def test_opening_a_notebook_names_its_trace_before_any_cell_runs(jp_serverapp, jp_fetch):
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    await save(jp_fetch, "work/credit.ipynb")
    _, kid = await open_session(jp_fetch, "work/credit.ipynb")
    started = next(
        e for e in trail_events(audit) if e["kind"] == "session.started" and e["trace_id"] == kid
    )
    assert started["notebook"] == "work/credit.ipynb"
    assert summary(audit, kid)["notebook"] == "work/credit.ipynb"
    assert renames(audit, kid) == []  # named at the start: nothing was renamed


async def test_a_session_attached_to_a_running_kernel_names_it(jp_serverapp, jp_fetch):
    """A restored workspace reconnects sessions to kernels that may have been started bare."""
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    kid = (await call(jp_fetch, "api", "kernels", method="POST", body={"name": "python3"}))["id"]
    assert summary(audit, kid)["notebook"] in (None, "")
    await open_session(jp_fetch, "restored.ipynb", kernel={"id": kid})
    assert summary(audit, kid)["notebook"] == "restored.ipynb"
    (named,) = renames(audit, kid)
    assert named["payload"]["from"] is None and named["payload"]["to"] == "restored.ipynb"
    # a console opened for that notebook shares its kernel and renames nothing
    await call(
        jp_fetch,
        "api",
        "sessions",
        method="POST",
        body={"path": "console-1", "type": "console", "kernel": {"id": kid}},
    )
    assert summary(audit, kid)["notebook"] == "restored.ipynb"
    assert len(renames(audit, kid)) == 1


async def test_a_rename_is_recorded_once_and_exports_follow_it(jp_serverapp, jp_fetch, jp_ws_fetch):
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    await save(jp_fetch, "draft.ipynb")
    sid, kid = await open_session(jp_fetch, "draft.ipynb")
    _, client = await open_kernel(jp_fetch, jp_ws_fetch, headers=ALICE, kernel_id=kid)
    for i in range(3):
        assert (await client.run(f"x = {i}"))[0] == "ok"
    # JupyterLab's rename: the file, then the session that has it open
    await call(
        jp_fetch, "api", "contents", "draft.ipynb", method="PATCH", body={"path": "final.ipynb"}
    )
    await call(
        jp_fetch,
        "api",
        "sessions",
        sid,
        method="PATCH",
        body={"path": "final.ipynb", "name": "final.ipynb"},
    )
    assert (await client.run("y = 1"))[0] == "ok"
    client.ws.close()
    (renamed,) = renames(audit, kid)
    assert renamed["payload"]["from"] == "draft.ipynb"
    assert renamed["payload"]["to"] == "final.ipynb"
    assert renamed["payload"]["via"] == "contents"
    assert renamed["identity"]["username"] == "alice"
    assert renamed["notebook"] == "final.ipynb"
    # every cell's report is in (the kernel sends them in the background)
    events = await wait_for(
        audit,
        lambda ev: (
            sum(e["kind"] == "cell.finished" and e["trace_id"] == kid for e in ev) == 4
            and any(e["kind"] == "session.environment" and e["trace_id"] == kid for e in ev)
        ),
    )
    cells = [e for e in events if e["kind"] == "cell.requested" and e["trace_id"] == kid]
    assert [c["notebook"] for c in cells] == ["draft.ipynb"] * 3 + ["final.ipynb"]
    assert summary(audit, kid)["notebook"] == "final.ipynb"
    # the whole trace by its new name and by its old one, through the REST export
    everything = sorted(e["seq"] for e in events if e["trace_id"] == kid)
    for name in ("final.ipynb", "draft.ipynb"):
        bundle = await call(
            jp_fetch, "jupyter-audit", "api", "export", headers=ADA, params={"notebook": name}
        )
        got = sorted(r["seq"] for r in bundle["records"] if r["trace_id"] == kid)
        assert got == everything, name
    assert queries.traces_named(audit.writer.cursor(), "draft.ipynb") == [kid]
    assert queries.traces_named(audit.writer.cursor(), "FINAL", partial=True) == [kid]
    assert queries.traces_named(audit.writer.cursor(), "nothing.ipynb") == []


async def test_moving_a_session_or_its_folder_renames_the_trace(jp_serverapp, jp_fetch):
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    await save(jp_fetch, "team/a.ipynb")
    sid, kid = await open_session(jp_fetch, "team/a.ipynb")
    await call(jp_fetch, "api", "sessions", sid, method="PATCH", body={"path": "team/b.ipynb"})
    await call(jp_fetch, "api", "contents", "team", method="PATCH", body={"path": "squad"})
    got = [
        (r["payload"]["from"], r["payload"]["to"], r["payload"]["via"]) for r in renames(audit, kid)
    ]
    assert got == [
        ("team/a.ipynb", "team/b.ipynb", "session"),
        ("team/b.ipynb", "squad/b.ipynb", "contents"),
    ]
    assert summary(audit, kid)["notebook"] == "squad/b.ipynb"


async def test_renaming_someone_elses_notebook_does_not_open_their_trace(jp_serverapp, jp_fetch):
    """On a shared server bob can move alice's session: it is recorded as his doing, but
    it does not make him one of her trace's participants (who may see it)."""
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    sid, kid = await open_session(jp_fetch, "alice.ipynb")
    await call(
        jp_fetch, "api", "sessions", sid, method="PATCH", body={"path": "bob.ipynb"}, headers=BOB
    )
    (renamed,) = renames(audit, kid)
    assert renamed["identity"]["username"] == "bob"
    assert summary(audit, kid)["users"] == ["alice"]
    with pytest.raises(HTTPClientError) as e:
        await call(jp_fetch, "jupyter-audit", "api", "traces", kid, headers=BOB)
    assert e.value.code == 403


async def test_a_hostile_name_is_stored_as_text_and_masked(jp_serverapp, jp_fetch):
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    sid, kid = await open_session(jp_fetch, "plain.ipynb")
    hostile = "\x1b[2J\x1b]0;pwned\x07<img src=x onerror=alert(1)>jane.doe@example.com.ipynb"
    await call(jp_fetch, "api", "sessions", sid, method="PATCH", body={"path": hostile})
    (renamed,) = renames(audit, kid)
    assert "jane.doe@example.com" not in json.dumps(renamed)
    assert "‹EMAIL:" in renamed["payload"]["to"] and renamed["notebook"] == renamed["payload"]["to"]
    assert renamed["payload"]["to"].startswith("\x1b[2J")  # stored as it came: shown safely


async def test_a_name_too_long_to_store_is_cut_not_dropped(jp_serverapp, jp_fetch, jp_ws_fetch):
    """jupyter_server takes any session path: the trail keeps the rename (cut, marked "…")
    and the kernel's cells keep running under it instead of being refused."""
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    sid, kid = await open_session(jp_fetch, "short.ipynb")
    await call(jp_fetch, "api", "sessions", sid, method="PATCH", body={"path": "n" * 5000})
    _, client = await open_kernel(jp_fetch, jp_ws_fetch, headers=ALICE, kernel_id=kid)
    assert (await client.run("z = 1"))[0] == "ok"
    client.ws.close()
    (renamed,) = renames(audit, kid)
    assert renamed["payload"]["to"] == "n" * 4095 + "…"
    cell = next(
        e for e in trail_events(audit) if e["kind"] == "cell.requested" and e["trace_id"] == kid
    )
    assert cell["notebook"] == renamed["payload"]["to"]


@pytest.mark.filterwarnings("ignore:The synchronous ContentsManager:DeprecationWarning")
class TestSynchronousContentsManager:
    """jupyter_server's synchronous FileContentsManager calls `rename` without awaiting it:
    the wrapper must stay synchronous there, or the file would never be renamed."""

    @pytest.fixture
    def jp_server_config(self, trail_dir):
        return server_config(
            trail_dir / "trail.duckdb",
            server={
                "identity_provider_class": "helpers.identity.HeaderIdentityProvider",
                "contents_manager_class": "jupyter_server.services.contents.filemanager."
                "FileContentsManager",
            },
        )

    async def test_a_rename_renames_the_file_and_the_trace(
        self, jp_serverapp, jp_fetch, jp_root_dir
    ):
        audit = jp_serverapp.web_app.settings["jupyter_audit"]
        await save(jp_fetch, "sync.ipynb")
        _, kid = await open_session(jp_fetch, "sync.ipynb")
        await call(
            jp_fetch, "api", "contents", "sync.ipynb", method="PATCH", body={"path": "moved.ipynb"}
        )
        assert (jp_root_dir / "moved.ipynb").exists() and not (jp_root_dir / "sync.ipynb").exists()
        assert [r["payload"]["to"] for r in renames(audit, kid)] == ["moved.ipynb"]
