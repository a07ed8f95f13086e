"""The extension in a real jupyter_server: REST endpoints, authentication on every endpoint,
roles, and the CLI talking to the live server with --url."""

import asyncio
import json
import re

import pytest
from helpers.servers import server_config
from tornado.httpclient import HTTPClientError

from jupyter_audit.cli import main as cli_main
from jupyter_audit.cli.demo import seed_demo_trail


@pytest.fixture
def db(trail_dir):
    path = trail_dir / "trail.duckdb"
    seed_demo_trail(str(path))
    return path


@pytest.fixture
def jp_server_config(db):
    return server_config(db)


async def get_json(jp_fetch, *parts, **kw):
    r = await jp_fetch("jupyter-audit", "api", *parts, **kw)
    return json.loads(r.body)


async def test_me_with_the_standard_token_login(jp_fetch):
    import getpass

    me = await get_json(jp_fetch, "me")
    assert me["username"] == getpass.getuser()
    assert me["identity"]["auth_method"] == "token"
    assert me["identity"]["session_user"]  # jupyter's per-browser id kept as a detail
    assert set(me["roles"]) == {"user", "reviewer", "auditor", "admin"}
    assert me["trail"]["integrity"]["ok"] is True
    assert me["trail"]["events"] > 10


async def test_traces_and_timeline(jp_fetch):
    data = await get_json(jp_fetch, "traces")
    traces = data["traces"]
    assert len(traces) == 2
    nb = {t["notebook"]: t for t in traces}
    review = nb["credit/model-review.ipynb"]
    assert review["users"] == ["alice", "bob"]
    assert review["cells"] == 5 and review["operations"] == 3
    one = await get_json(jp_fetch, "traces", review["trace_id"])
    kinds = [e["kind"] for e in one["events"]]
    assert kinds[0] == "session.started"
    assert "op.sql" in kinds and "op.http" in kinds and "op.shell" in kinds
    sql = next(e for e in one["events"] if e["kind"] == "op.sql")
    assert sql["identity"]["username"] == "alice"
    assert "jane.doe@example.com" not in json.dumps(one)  # masked before storage
    http = next(e for e in one["events"] if e["kind"] == "op.http")
    assert "abc123secret" not in http["payload"]["url"]


async def test_bad_input_gets_a_clear_400_and_unknown_trace_404(jp_fetch):
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("jupyter-audit", "api", "traces", params={"limit": "lots"})
    assert e.value.code == 400
    assert json.loads(e.value.response.body) == {"code": 400, "message": "limit must be an integer"}
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("jupyter-audit", "api", "traces", "no-such-trace")
    assert e.value.code == 404
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("jupyter-audit", "api", "export", params={"since": "yesterday"})
    assert e.value.code == 400


async def test_every_audit_endpoint_requires_credentials(jp_serverapp, jp_fetch):
    """Like the extension template's check_auth: any /jupyter-audit/ route must refuse a
    request without credentials. New endpoints are covered automatically."""
    patterns = set()

    def walk(router):
        for rule in getattr(router, "rules", []):
            pattern = getattr(rule.matcher, "regex", None)
            if pattern is not None and "jupyter-audit" in pattern.pattern:
                patterns.add(pattern.pattern)
            walk(rule.target)

    walk(jp_serverapp.web_app.default_router)
    walk(jp_serverapp.web_app.wildcard_router)
    assert len(patterns) >= 5
    for pattern in patterns:
        path = re.sub(r"\(.*?\)(\{\d+\})?", "0123456789abcdef", pattern).rstrip("$")
        path = path.split("jupyter-audit/", 1)[1]
        for method in ("GET", "POST", "PUT", "DELETE"):
            body = b"{}" if method in ("POST", "PUT") else None
            with pytest.raises(HTTPClientError) as e:
                await jp_fetch(
                    "jupyter-audit",
                    path,
                    method=method,
                    body=body,
                    headers={"Authorization": "token wrong"},
                    allow_nonstandard_methods=True,
                )
            # kernel endpoints take only kernel secrets (403); user endpoints answer 401
            expected = (403, 405) if "/kernel/" in path else (401, 405)
            assert e.value.code in expected, (method, path, e.value.code)


async def test_cli_verify_show_and_export_through_the_live_server(
    jp_serverapp, jp_fetch, jp_http_port, jp_base_url, tmp_path
):
    # jp_fetch brings up the listening HTTP server the CLI talks to
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
    token = jp_serverapp.identity_provider.token
    code = await asyncio.to_thread(cli_main, ["verify", "--url", url, "--token", token])
    assert code == 0
    code = await asyncio.to_thread(cli_main, ["show", "--url", url, "--token", token])
    assert code == 0
    out = tmp_path / "export.jsonl"
    code = await asyncio.to_thread(
        cli_main,
        ["export", "--url", url, "--token", token, "--user", "alice", "-o", str(out)],
    )
    assert code == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines and all(r["identity"]["username"] == "alice" for r in lines)
    code = await asyncio.to_thread(cli_main, ["verify", "--bundle", str(out)])
    assert code == 0
    code = await asyncio.to_thread(cli_main, ["verify", "--url", url, "--token", "nope"])
    assert code == 2


class TestRoles:
    @pytest.fixture
    def jp_server_config(self, db):
        return server_config(
            db, server={"identity_provider_class": "helpers.identity.HeaderIdentityProvider"}
        )

    async def test_unknown_user_is_refused(self, jp_fetch):
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch("jupyter-audit", "api", "me", headers={"X-Test-User": "mallory"})
        assert e.value.code in (401, 403)

    async def test_user_sees_only_own_traces_and_gets_403_for_auditor_endpoints(self, jp_fetch):
        h = {"X-Test-User": "alice"}
        me = await get_json(jp_fetch, "me", headers=h)
        assert me["roles"] == ["user"]
        traces = (await get_json(jp_fetch, "traces", headers=h))["traces"]
        assert [t["notebook"] for t in traces] == ["credit/model-review.ipynb"]
        for parts in (("verify",), ("export",)):
            with pytest.raises(HTTPClientError) as e:
                await jp_fetch("jupyter-audit", "api", *parts, headers=h)
            assert e.value.code == 403
            message = json.loads(e.value.response.body)["message"]
            # which role, and which configured groups grant it
            assert "auditor role" in message and "audit-auditors" in message
            assert "c.AuditApp.auditor_groups" in message
        other = (await get_json(jp_fetch, "traces", headers={"X-Test-User": "ada"}))["traces"]
        xss = next(t for t in other if t["notebook"].startswith("<img"))
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch("jupyter-audit", "api", "traces", xss["trace_id"], headers=h)
        assert e.value.code == 403
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch("jupyter-audit", "api", "traces", params={"user": "bob"}, headers=h)
        assert e.value.code == 403

    async def test_auditor_sees_all_and_access_is_recorded(self, jp_fetch):
        h = {"X-Test-User": "ada"}
        traces = (await get_json(jp_fetch, "traces", headers=h))["traces"]
        assert len(traces) == 2
        await get_json(jp_fetch, "traces", traces[0]["trace_id"], headers=h)
        result = await get_json(jp_fetch, "verify", headers=h)
        assert result["ok"] is True
        bundle = await get_json(jp_fetch, "export", headers=h, params={"user": "bob"})
        assert {r["identity"]["username"] for r in bundle["records"]} == {"bob"}
        assert not bundle["uncovered"]
        # both the view and the export of others' traces are in the trail
        all_events = await get_json(jp_fetch, "export", headers=h, params={"user": "ada"})
        actions = [
            r["payload"]["action"] for r in all_events["records"] if r["kind"] == "trail.accessed"
        ]
        assert actions[:2] == ["view", "export"]


class TestDamagedTrail:
    """A server opening a damaged trail still starts, records a trail.integrity event past
    the damage and reports it to the panel through me and traces."""

    @pytest.fixture
    def jp_server_config(self, db):
        import duckdb

        con = duckdb.connect(str(db))
        con.execute("DELETE FROM events WHERE seq = 5")
        con.close()
        return server_config(db)

    async def test_breakage_is_reported(self, jp_fetch):
        me = await get_json(jp_fetch, "me")
        integrity = me["trail"]["integrity"]
        assert integrity["ok"] is False
        assert integrity["first_bad_seq"] == 5
        assert integrity["problem"] == "record missing"
        traces = await get_json(jp_fetch, "traces")
        assert traces["integrity"]["first_bad_seq"] == 5
        result = await get_json(jp_fetch, "verify")
        assert (result["ok"], result["first_bad_seq"]) == (False, 5)


async def test_the_gil_switch_interval_bounds_the_event_loops_wait(jp_serverapp):
    """The writer commits on a thread beside the event loop that forwards kernel messages:
    the server process's GIL switch interval is 1 ms (Python's default is 5 ms)."""
    import sys

    [app] = jp_serverapp.extension_manager.extension_apps["jupyter_audit"]
    assert app.gil_switch_interval == 0.001
    assert sys.getswitchinterval() == pytest.approx(0.001)


class TestGilSwitchIntervalLeftAlone:
    @pytest.fixture
    def jp_server_config(self, db):
        import sys

        sys.setswitchinterval(0.004)  # as another part of the process may have set it
        yield server_config(db, gil_switch_interval=0)
        sys.setswitchinterval(0.005)

    async def test_zero_leaves_the_interpreters_setting(self, jp_serverapp):
        import sys

        [app] = jp_serverapp.extension_manager.extension_apps["jupyter_audit"]
        assert app.gil_switch_interval == 0
        assert sys.getswitchinterval() == pytest.approx(0.004)
