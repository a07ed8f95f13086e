"""A trace's participants are people and service accounts: the server's own events (identity
`auth_method` `system`, e.g. `session.ended` at shutdown) name no one, and read as the
server's wherever they are shown. Trails of format 2, which listed the server's OS account,
migrate to format 3 and still verify; verify keeps catching edited participants."""

import getpass
import json

import duckdb
import pytest
from helpers.kernels import open_kernel
from helpers.servers import server_config
from helpers.trail import ALICE, trail_events, wait_for
from tornado.httpclient import HTTPClientError

from jupyter_audit.cli import main as cli_main
from jupyter_audit.identity import system_identity

OS_USER = getpass.getuser()
SERVER = f"jupyter-audit server ({OS_USER})"
DERIVED = "derived_changed"


def cell_events(trace="trace-1", who=ALICE) -> list[dict]:
    base = {"trace_id": trace, "kernel_id": "kernel-1", "notebook": "a.ipynb", "identity": who}
    return [
        {**base, "kind": "session.started", "payload": {"reason": "start"}},
        {**base, "kind": "cell.requested", "msg_id": "m1", "payload": {"code": "1 + 1"}},
        {**base, "kind": "cell.started", "msg_id": "m1", "payload": {"execution_count": 1}},
        {**base, "kind": "cell.finished", "msg_id": "m1", "payload": {"status": "ok"}},
        # the server ending the kernel at shutdown: no request, so its own identity
        {
            **base,
            "kind": "session.ended",
            "identity": system_identity(),
            "payload": {"reason": "server shutdown"},
        },
    ]


def verify_json(db, capsys, *extra):
    capsys.readouterr()
    code = cli_main(["verify", "--db", str(db), "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def sql(db, *statements):
    con = duckdb.connect(str(db))
    for s in statements:
        con.execute(s)
    con.close()


def participants(db) -> list[tuple[str, str]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT * FROM trace_users ORDER BY ALL").fetchall()
    finally:
        con.close()


def format_version(db) -> str:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()[0]
    finally:
        con.close()


@pytest.fixture
def db(make_writer, trail_dir):
    w = make_writer()
    w.append_many(cell_events())
    w.close()
    return trail_dir / "trail.duckdb"


def test_the_server_ending_a_trace_is_no_participant(db, capsys):
    from jupyter_audit.store import queries
    from jupyter_audit.store.schema import open_readable

    assert participants(db) == [("trace-1", "alice")]
    con, _ = open_readable(db)
    try:
        assert queries.list_traces(con)[0]["users"] == ["alice"]
        assert queries.list_traces(con, username=OS_USER) == []
        ended = queries.get_trace_events(con, "trace-1")[-1]
    finally:
        con.close()
    # the export's identity says whose it is; its fields are the snapshot's, as signed
    assert ended["kind"] == "session.ended"
    assert ended["identity"]["auth_method"] == "system"
    assert ended["identity"]["username"] == OS_USER
    assert ended["identity"]["display_name"] == SERVER
    code, r = verify_json(db, capsys)
    assert code == 0, r

    assert cli_main(["show", "--db", str(db)]) == 0
    listing = capsys.readouterr().out
    assert "alice" in listing and OS_USER not in listing.replace(str(db), "")
    assert cli_main(["show", "--db", str(db), "trace-1"]) == 0
    timeline = capsys.readouterr().out.splitlines()
    assert timeline[1].split("kernel:")[0].strip() == "users: alice"
    ended_line = next(line for line in timeline if "session.ended" in line)
    assert SERVER in ended_line
    assert "alice" in next(line for line in timeline if "cell.requested" in line)


def test_an_export_bundle_of_the_servers_events_still_proves_them(db, tmp_path, capsys):
    """The label is the snapshot's own display name, not a field added on export: the
    identity still hashes to the record's identity_id."""
    out = tmp_path / "e.jsonl"
    assert cli_main(["export", "--db", str(db), "--trace", "trace-1", "-o", str(out)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert rows[-1]["identity"]["display_name"] == SERVER
    assert cli_main(["verify", "--bundle", str(out)]) == 0


def make_format_2(db) -> None:
    """What format 2 (the code before it) left on disk for the same log: the server's OS
    account among the participants of every trace it ended."""
    sql(
        db,
        f"INSERT INTO trace_users VALUES ('trace-1', '{OS_USER}')",
        "UPDATE meta SET value = '2' WHERE key = 'format_version'",
    )


def test_a_format_2_trail_verifies_before_and_after_its_migration(db, make_writer, capsys):
    pub = str(db.parent / "signing-key.pem.pub")
    make_format_2(db)
    code, before = verify_json(db, capsys, "--pubkey", pub)  # by format 2's rules
    assert code == 0, before
    assert before["checkpoint"] is not None
    assert sorted(participants(db)) == [("trace-1", "alice"), ("trace-1", OS_USER)]

    w = make_writer()  # a server opening it migrates it
    assert w.integrity.ok, w.integrity
    w.append(cell_events()[1] | {"msg_id": "m2"})
    w.close()
    assert format_version(db) == "4"  # through 3 (participants) to 4 (compact)
    assert participants(db) == [("trace-1", "alice")]
    code, after = verify_json(db, capsys, "--pubkey", pub)
    assert code == 0, after
    # the checkpoints signed before the migration are among those checked after it
    assert after["checkpoints_checked"] > before["checkpoints_checked"] >= 1
    assert after["checkpoint"]["seq"] > before["checkpoint"]["seq"]
    assert after["key_source"] == "pinned"


def test_a_format_2_trail_with_an_edited_participant_still_shows_it_after_migration(
    db, make_writer, capsys
):
    """The migration removes only what format 2 put there for the server's own events: a
    row someone added by hand is reported by the server that migrates it, then recounted."""
    make_format_2(db)
    sql(db, "INSERT INTO trace_users VALUES ('trace-1', 'mallory')")
    code, before = verify_json(db, capsys)
    assert code == 1 and DERIVED in [p["problem"] for p in before["problems"]]
    w = make_writer()
    assert DERIVED in [p["problem"] for p in w.integrity.problems]
    assert w.cursor().execute("SELECT count(*) FROM trace_users").fetchone() == (1,)
    w.close()
    assert participants(db) == [("trace-1", "alice")]


@pytest.mark.parametrize(
    "edit",
    [
        f"INSERT INTO trace_users VALUES ('trace-1', '{OS_USER}')",  # the server named again
        "DELETE FROM trace_users WHERE username = 'alice'",
        "UPDATE trace_users SET username = 'mallory'",
    ],
)
def test_verify_catches_an_edited_participant(db, capsys, edit):
    sql(db, edit)
    code, r = verify_json(db, capsys)
    assert code == 1
    assert DERIVED in [p["problem"] for p in r["problems"]], r


def test_a_people_only_trail_claiming_format_2_is_migrated_again(db, make_writer):
    """Lowering the format version does not bring the server back as a participant: the
    next server to open the trail migrates it, and the rows match the log."""
    sql(db, "UPDATE meta SET value = '2' WHERE key = 'format_version'")
    w = make_writer()
    assert w.integrity.ok, w.integrity
    w.close()
    assert participants(db) == [("trace-1", "alice")]


def test_the_servers_owner_signed_in_with_the_token_login_stays_a_participant(
    make_writer, trail_dir, capsys
):
    """Under the standard token login the person is the OS account, as the server's own
    identity is: their cells keep them listed, the server's events alone do not, and the
    format 2 -> 3 migration keeps them too."""
    owner = {"username": OS_USER, "auth_method": "token"}
    w = make_writer()
    w.append_many(cell_events("theirs", who=owner) + cell_events("ended-only", who=ALICE))
    w.close()
    db = trail_dir / "trail.duckdb"
    want = [("ended-only", "alice"), ("theirs", OS_USER)]
    assert participants(db) == want
    sql(
        db,
        f"INSERT INTO trace_users VALUES ('ended-only', '{OS_USER}')",
        "UPDATE meta SET value = '2' WHERE key = 'format_version'",
    )
    assert verify_json(db, capsys)[0] == 0
    w = make_writer()
    assert w.integrity.ok, w.integrity
    w.close()
    assert participants(db) == want


def test_rebuilt_derived_tables_leave_the_server_out(db, make_writer):
    sql(db, "DELETE FROM trace_users", "DELETE FROM traces")
    w = make_writer()  # finds them edited, rebuilds them from the log
    assert not w.integrity.ok
    w.close()
    assert participants(db) == [("trace-1", "alice")]


def test_an_identity_provider_class_named_system_is_no_server():
    """A custom provider's class name gives its auth_method: `SystemIdentityProvider` must
    not make its people read as the server."""
    from jupyter_server.auth.identity import IdentityProvider, User

    from jupyter_audit.identity import is_system
    from jupyter_audit.identity.resolve import snapshot_for

    class SystemIdentityProvider(IdentityProvider):
        pass

    snap = snapshot_for(User(username="eve"), SystemIdentityProvider())
    assert snap["auth_method"] == "custom" and not is_system(snap)


class TestOverREST:
    """A real server and kernel: alice runs a cell, the server records the end of her
    kernel at shutdown; REST lists only alice and shows the end as the server's."""

    @pytest.fixture
    def jp_server_config(self, trail_dir):
        return server_config(
            trail_dir / "trail.duckdb",
            server={"identity_provider_class": "helpers.identity.HeaderIdentityProvider"},
        )

    async def test_traces_list_people_and_say_the_servers_events_are_its_own(
        self, jp_serverapp, jp_fetch, jp_ws_fetch, monkeypatch
    ):
        from helpers import identity

        from jupyter_audit.server.hooks.lifecycle import record_server_shutdown

        # someone who signs in with the server's OS account name, in no privileged group
        monkeypatch.setitem(identity.DIRECTORY, OS_USER, ["data-science"])
        audit = jp_serverapp.web_app.settings["jupyter_audit"]
        # a browser's XSRF pair (cookie and header), which a POST with a session needs
        alice = {"X-Test-User": "alice", "X-XSRFToken": "xsrf-test", "Cookie": "_xsrf=xsrf-test"}
        kid, client = await open_kernel(jp_fetch, jp_ws_fetch, headers=alice)
        assert (await client.run("print(6 * 7)"))[0] == "ok"
        client.ws.close()
        record_server_shutdown(audit, jp_serverapp.kernel_manager)
        await wait_for(
            audit, lambda ev: any(e["kind"] == "session.ended" and e["trace_id"] == kid for e in ev)
        )
        ended = [e for e in trail_events(audit) if e["kind"] == "session.ended"]
        assert ended[0]["identity"]["auth_method"] == "system"

        async def get(*parts, headers):
            r = await jp_fetch("jupyter-audit", "api", *parts, headers=headers)
            return json.loads(r.body)

        traces = (await get("traces", headers=alice))["traces"]
        mine = next(t for t in traces if t["trace_id"] == kid)
        assert mine["users"] == ["alice"]
        detail = await get("traces", kid, headers=alice)
        assert detail["trace"]["users"] == ["alice"]
        end = next(e for e in detail["events"] if e["kind"] == "session.ended")
        assert end["identity"]["display_name"] == SERVER
        assert end["identity"]["auth_method"] == "system"
        assert any(
            e["kind"] == "cell.requested" and e["identity"]["username"] == "alice"
            for e in detail["events"]
        )

        # the person named like the server's account took no part: alice's trace is not theirs
        namesake = {"X-Test-User": OS_USER}
        assert kid not in [t["trace_id"] for t in (await get("traces", headers=namesake))["traces"]]
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch("jupyter-audit", "api", "traces", kid, headers=namesake)
        assert e.value.code == 403


class TestServerCallbacks:
    """What the server does on its own later (the idle culler, a kernel found dead) is the
    server's, even when the timer behind it was started inside someone's request: the
    culler starts with the first kernel, in the request of whoever started it."""

    @pytest.fixture
    def jp_server_config(self, trail_dir):
        cfg = server_config(
            trail_dir / "trail.duckdb",
            server={"identity_provider_class": "helpers.identity.HeaderIdentityProvider"},
        )
        cfg["MappingKernelManager"] = {"cull_idle_timeout": 1, "cull_interval": 1}
        return cfg

    @pytest.fixture
    def no_culler(self, jp_server_config):
        jp_server_config["MappingKernelManager"] = {"cull_idle_timeout": 0}
        jp_server_config["KernelRestarter"] = {"restart_limit": 0}  # the first death is final

    async def test_a_culled_kernel_is_ended_by_the_server_not_by_the_first_kernels_starter(
        self, jp_serverapp, jp_fetch
    ):
        audit = jp_serverapp.web_app.settings["jupyter_audit"]

        async def start(who):
            r = await jp_fetch(
                "api",
                "kernels",
                method="POST",
                body=json.dumps({"name": "python3"}),
                headers={"X-Test-User": who, "X-XSRFToken": "x", "Cookie": "_xsrf=x"},
            )
            return json.loads(r.body)["id"]

        await start("alice")  # the culler's timer starts in alice's request
        bobs = await start("bob")
        events = await wait_for(
            audit,
            lambda ev: any(e["kind"] == "session.ended" and e["trace_id"] == bobs for e in ev),
        )
        ended = next(e for e in events if e["kind"] == "session.ended" and e["trace_id"] == bobs)
        assert ended["identity"]["username"] != "alice", ended["identity"]
        assert ended["identity"]["auth_method"] == "system", ended["identity"]

    async def test_a_kernel_found_dead_is_ended_by_the_server_not_by_its_starter(
        self, no_culler, jp_serverapp, jp_fetch
    ):
        import os
        import signal

        audit = jp_serverapp.web_app.settings["jupyter_audit"]
        r = await jp_fetch(
            "api",
            "kernels",
            method="POST",
            body=json.dumps({"name": "python3"}),
            headers={"X-Test-User": "alice", "X-XSRFToken": "x", "Cookie": "_xsrf=x"},
        )
        kid = json.loads(r.body)["id"]
        km = jp_serverapp.kernel_manager.get_kernel(kid)
        os.kill(km.provisioner.process.pid, signal.SIGKILL)  # its restarter finds it dead
        events = await wait_for(
            audit,
            lambda ev: any(e["kind"] == "session.ended" and e["trace_id"] == kid for e in ev),
        )
        ended = next(e for e in events if e["kind"] == "session.ended" and e["trace_id"] == kid)
        assert ended["payload"]["reason"] == "died"
        assert ended["identity"]["auth_method"] == "system", ended["identity"]
