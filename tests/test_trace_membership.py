"""`file.saved` and `trail.accessed` belong to the trace they concern and show in it, but
neither makes anyone a participant (who may see the trace), and a view does not count as
the trace's activity; exports of a filtered set stay in no trace."""

import json

import pytest
from helpers.servers import server_config
from helpers.sessions import ADA, BOB, call, open_session, save
from helpers.trail import ALICE as ALICE_ID
from helpers.trail import BOB as BOB_ID
from helpers.trail import trail_events
from tornado.httpclient import HTTPClientError

from jupyter_audit.store import queries


@pytest.fixture
def jp_server_config(trail_dir):
    return server_config(
        trail_dir / "trail.duckdb",
        server={"identity_provider_class": "helpers.identity.HeaderIdentityProvider"},
    )


async def test_a_save_shows_in_each_trace_that_has_the_notebook_open(jp_serverapp, jp_fetch):
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    await save(jp_fetch, "shared.ipynb")
    _, k1 = await open_session(jp_fetch, "shared.ipynb")
    # the sessions API keeps one session per path: bob's second one is moved onto it
    s2, k2 = await open_session(jp_fetch, "copy.ipynb", headers=BOB)
    await call(
        jp_fetch, "api", "sessions", s2, method="PATCH", body={"path": "shared.ipynb"}, headers=BOB
    )
    assert k1 != k2
    trail_events(audit)  # flushed
    before = {k: queries.get_trace_summary(audit.writer.cursor(), k)["users"] for k in (k1, k2)}
    await save(jp_fetch, "shared.ipynb", headers=BOB)
    await save(jp_fetch, "loose.ipynb", headers=BOB)
    saved = [e for e in trail_events(audit) if e["kind"] == "file.saved"]  # flushed too
    by_bob = [e for e in saved if e["identity"]["username"] == "bob"]
    assert sorted(e["trace_id"] or "-" for e in by_bob) == sorted(["-", k1, k2])
    assert len({e["payload"]["sha256"] for e in by_bob if e["trace_id"]}) == 1
    loose = next(e for e in by_bob if e["trace_id"] is None)
    assert loose["payload"]["path"] == "loose.ipynb"
    # bob saved alice's notebook: in her trace, but he does not join it
    after = {k: queries.get_trace_summary(audit.writer.cursor(), k)["users"] for k in (k1, k2)}
    assert after == before == {k1: ["alice"], k2: ["bob"]}
    with pytest.raises(HTTPClientError) as e:
        await call(jp_fetch, "jupyter-audit", "api", "traces", k1, headers=BOB)
    assert e.value.code == 403
    shown = await call(jp_fetch, "jupyter-audit", "api", "traces", k1)
    assert any(ev["kind"] == "file.saved" for ev in shown["events"])


async def test_an_auditors_view_shows_in_the_trace_without_joining_or_counting(
    jp_serverapp, jp_fetch
):
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    _, kid = await open_session(jp_fetch, "model.ipynb")
    trail_events(audit)
    row = queries.get_trace_summary(audit.writer.cursor(), kid)
    await call(jp_fetch, "jupyter-audit", "api", "traces", kid, headers=ADA)
    await call(jp_fetch, "jupyter-audit", "api", "export", headers=ADA, params={"trace": kid})
    await call(
        jp_fetch, "jupyter-audit", "api", "export", headers=ADA, params={"notebook": "model.ipynb"}
    )
    await call(jp_fetch, "jupyter-audit", "api", "export", headers=ADA, params={"trace": "no-such"})
    accessed = [e for e in trail_events(audit) if e["kind"] == "trail.accessed"]
    assert [(e["payload"]["action"], e["trace_id"]) for e in accessed] == [
        ("view", kid),
        ("export", kid),
        ("export", None),  # a filtered set
        ("export", None),  # no such trace
    ]
    mine = await call(jp_fetch, "jupyter-audit", "api", "traces", kid)  # alice's own view
    assert [e["identity"]["username"] for e in mine["events"] if e["kind"] == "trail.accessed"] == [
        "ada",
        "ada",
    ]
    # the trace's row is as it was: no new participant, count or last activity
    assert queries.get_trace_summary(audit.writer.cursor(), kid) == row
    result = await call(jp_fetch, "jupyter-audit", "api", "verify", headers=ADA)
    assert result["ok"] is True, result  # the derived tables agree with these rules


def test_the_rules_hold_when_the_derived_tables_are_rebuilt(make_writer, trail_dir):
    """The Writer's batches, a rebuild from the log and verify's check agree: a save, a
    rename and a view are in the trace but name no participant; the view is not counted."""
    import duckdb

    from jupyter_audit.cli import main as cli_main

    w = make_writer()
    base = {"trace_id": "t-1", "kernel_id": "t-1", "notebook": "a.ipynb"}
    ada = {"username": "ada", "auth_method": "token"}
    w.append_many(
        [
            {**base, "identity": ALICE_ID, "kind": "session.started", "payload": {"reason": "s"}},
            {
                **base,
                "identity": ALICE_ID,
                "kind": "cell.requested",
                "msg_id": "m",
                "payload": {"code": "1"},
            },
            {
                **base,
                "identity": BOB_ID,
                "kind": "file.saved",
                "payload": {"path": "a.ipynb", "sha256": "00", "size": 1},
            },
            {
                **base,
                "identity": BOB_ID,
                "kind": "session.renamed",
                "notebook": "b.ipynb",
                "payload": {"from": "a.ipynb", "to": "b.ipynb"},
            },
            {
                "trace_id": "t-1",
                "identity": ada,
                "kind": "trail.accessed",
                "payload": {"action": "view", "trace_id": "t-1"},
            },
        ]
    )
    w.close()
    db = trail_dir / "trail.duckdb"

    def derived(con):
        return (
            con.execute("SELECT * FROM traces ORDER BY ALL").fetchall(),
            con.execute("SELECT * FROM trace_users ORDER BY ALL").fetchall(),
        )

    con = duckdb.connect(str(db))
    try:
        written = derived(con)
        queries.rebuild_derived(con)
        assert derived(con) == written
        assert written[1] == [("t-1", "alice")]
        row = queries.get_trace_summary(con, "t-1")
        assert row["events"] == 4 and row["notebook"] == "b.ipynb"
        assert queries.traces_named(con, "a.ipynb") == ["t-1"]
    finally:
        con.close()
    assert cli_main(["verify", "--db", str(db)]) == 0
    # the CLI's export by either name: the whole trace, the view included
    for name in ("a.ipynb", "b.ipynb"):
        out = trail_dir / f"{name}.jsonl"
        assert cli_main(["export", "--db", str(db), "--notebook", name, "-o", str(out)]) == 0
        kinds = [json.loads(x)["kind"] for x in out.read_text().splitlines()]
        assert kinds == [
            "session.started",
            "cell.requested",
            "file.saved",
            "session.renamed",
            "trail.accessed",
        ], name
