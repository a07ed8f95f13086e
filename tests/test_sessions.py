"""Browser sign-in sessions that end inside an open JupyterLab (issue 12, items 3 and 6),
against a real OIDC provider over HTTP (`oidc-provider-mock`), real kernels and terminals:

- a 401 for an ended or expired session says so (`reason`) and where to sign in again;
- the kernel websockets and terminals a session opened are closed, with the reason, when it
  ends (`/logout`) and when it expires; an expired session's cookie is recorded as
  `security.rejected`;
- JupyterLab workspaces are kept per signed-in user.
"""

import asyncio
import json
from datetime import UTC, datetime

import pytest
import requests
from helpers.kernels import open_kernel
from helpers.oidc import CLIENT, MockProvider, oidc_config
from helpers.trail import trail_events
from tornado.httpclient import HTTPClientError

from jupyter_audit.identity.sessions import CLOSE_CODE, SESSION_ENDED, SESSION_EXPIRED

ALICE = {"preferred_username": "alice", "email": "alice@example.org", "groups": ["analysts"]}
BOB = {"preferred_username": "bob", "email": "bob@example.org", "groups": ["analysts"]}


@pytest.fixture(scope="module")
def provider():
    p = MockProvider()
    p.set_user("alice-sub", ALICE)
    p.set_user("bob-sub", BOB)
    yield p
    p.stop()


def session_config(trail_dir, issuer, **idp) -> dict:
    """An OIDC server with terminals (jupyter_server_terminals' websocket has no auth
    decorator, so it only loads where unauthenticated access is not refused outright; the
    identity provider still requires a sign-in for it)."""
    cfg = oidc_config(trail_dir, issuer, **idp)
    cfg["ServerApp"]["allow_unauthenticated_access"] = True
    cfg["ServerApp"]["jpserver_extensions"]["jupyter_server_terminals"] = True
    cfg["ServerApp"]["terminado_settings"] = {"shell_command": ["sh"]}
    return cfg


def sign_in(base: str, provider, sub: str) -> requests.Session:
    """A browser signed in as `sub` through /login, the issuer and /oidc/callback."""
    s = requests.Session()
    r = s.get(base + "login", allow_redirects=False)
    assert r.status_code == 302, r.text
    r = s.get(provider.approve(r.headers["Location"], sub), allow_redirects=False)
    assert r.status_code == 302, r.text
    return s


def cookie_header(s: requests.Session) -> dict:
    """The browser's cookies as a request header (no other credential)."""
    return {"Cookie": "; ".join(f"{c.name}={c.value}" for c in s.cookies), "Authorization": ""}


def rejections(jp_serverapp) -> list[str]:
    events = trail_events(jp_serverapp.web_app.settings["jupyter_audit"])
    return [e["payload"]["reason"] for e in events if e["kind"] == "security.rejected"]


async def closed(ws, timeout: float = 30) -> tuple:
    """Read until the server closes the socket: (close code, close reason)."""

    async def drain():
        while await ws.read_message() is not None:
            pass

    await asyncio.wait_for(drain(), timeout)
    return ws.close_code, ws.close_reason


async def open_sockets(jp_fetch, jp_ws_fetch, provider, cookies: dict):
    """A kernel websocket and a terminal websocket opened with the browser's cookie (the
    kernel and terminal themselves started with a bearer ID token)."""
    token = (await asyncio.to_thread(provider.tokens, "alice-sub", CLIENT))["id_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    r = await jp_fetch("api", "kernels", method="POST", body='{"name": "python3"}', headers=bearer)
    _kid, client = await open_kernel(
        jp_fetch, jp_ws_fetch, headers=dict(cookies), kernel_id=json.loads(r.body)["id"]
    )
    status, out = await client.run("print('still here')")
    assert (status, out.strip()) == ("ok", "still here")
    r = await jp_fetch("api", "terminals", method="POST", body="{}", headers=bearer)
    term = await jp_ws_fetch(
        "terminals", "websocket", json.loads(r.body)["name"], headers=dict(cookies)
    )
    term.write_message(json.dumps(["stdin", "echo hello\r"]))
    return client, term


class TestSessionEnds:
    @pytest.fixture
    def jp_server_config(self, trail_dir, provider):
        return session_config(trail_dir, provider.issuer)

    async def test_logout_closes_the_sessions_kernel_and_terminal_websockets(
        self, jp_serverapp, jp_fetch, jp_ws_fetch, jp_http_port, jp_base_url, provider
    ):
        base = f"http://localhost:{jp_http_port}{jp_base_url}"
        s = await asyncio.to_thread(sign_in, base, provider, "alice-sub")
        cookies = cookie_header(s)
        client, term_ws = await open_sockets(jp_fetch, jp_ws_fetch, provider, cookies)
        r = await asyncio.to_thread(s.get, base + "logout", allow_redirects=False)
        assert r.status_code == 302
        assert await closed(client.ws) == (CLOSE_CODE, SESSION_ENDED)
        assert await closed(term_ws) == (CLOSE_CODE, SESSION_ENDED)

        # the cookie copied before signing out: a 401 that says the session ended
        r = await asyncio.to_thread(requests.get, base + "jupyter-audit/api/me", headers=cookies)
        body = r.json()
        assert r.status_code == 401 and body["reason"] == "session_ended"
        assert body["login_url"] == jp_base_url + "login"
        assert "session ended" in body["message"] and "sign in again" in body["message"]
        # jupyter_server's own API (what JupyterLab shows when a kernel reconnects) says so
        r = await asyncio.to_thread(requests.get, base + "api/kernels", headers=cookies)
        assert r.status_code == 403
        assert r.json()["message"] == (
            "Your session has ended: sign in again (signed out, or the server restarted)"
        )
        # nor can it open a new kernel websocket
        with pytest.raises(HTTPClientError):
            await jp_ws_fetch("terminals", "websocket", "1", headers=dict(cookies))

    async def test_a_401_without_a_session_says_how_to_sign_in(self, jp_fetch, jp_base_url):
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch("jupyter-audit", "api", "me", headers={"Authorization": ""})
        body = json.loads(e.value.response.body)
        assert e.value.code == 401
        assert body["reason"] == "not_signed_in" and body["login_url"] == jp_base_url + "login"
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch("jupyter-audit", "api", "me", headers={"Authorization": "Bearer x.y.z"})
        assert json.loads(e.value.response.body)["reason"] == "credential_refused"

    async def test_another_users_logout_leaves_a_session_open(
        self, jp_serverapp, jp_fetch, jp_ws_fetch, jp_http_port, jp_base_url, provider
    ):
        base = f"http://localhost:{jp_http_port}{jp_base_url}"
        alice = await asyncio.to_thread(sign_in, base, provider, "alice-sub")
        bob = await asyncio.to_thread(sign_in, base, provider, "bob-sub")
        client, term_ws = await open_sockets(jp_fetch, jp_ws_fetch, provider, cookie_header(alice))
        await asyncio.to_thread(bob.get, base + "logout", allow_redirects=False)
        # alice's kernel websocket still runs her cells: only bob's session ended
        status, out = await client.run("print('alice again')")
        assert (status, out.strip()) == ("ok", "alice again")
        me = await asyncio.to_thread(alice.get, base + "jupyter-audit/api/me")
        assert me.json()["identity"]["username"] == "alice"
        assert client.ws.close_code is None and term_ws.close_code is None
        client.ws.close()
        term_ws.close()


class TestSessionExpires:
    @pytest.fixture
    def jp_server_config(self, trail_dir, provider):
        # long enough for a kernel to start and run a cell on a busy machine
        return session_config(trail_dir, provider.issuer, session_lifetime=10)

    async def test_expiry_closes_websockets_and_an_expired_cookie_is_recorded(
        self, jp_serverapp, jp_fetch, jp_ws_fetch, jp_http_port, jp_base_url, provider
    ):
        base = f"http://localhost:{jp_http_port}{jp_base_url}"
        s = await asyncio.to_thread(sign_in, base, provider, "alice-sub")
        cookies = cookie_header(s)
        me = (await asyncio.to_thread(s.get, base + "jupyter-audit/api/me")).json()
        expires = datetime.fromisoformat(me["session_expires_at"])
        assert 0 < (expires - datetime.now(UTC)).total_seconds() <= 10
        client, term_ws = await open_sockets(jp_fetch, jp_ws_fetch, provider, cookies)
        # the session expires while both are open: each is closed, saying so
        assert await closed(client.ws) == (CLOSE_CODE, SESSION_EXPIRED)
        assert await closed(term_ws) == (CLOSE_CODE, SESSION_EXPIRED)

        # the expired cookie, kept past its max-age: a 401 that says so, recorded
        r = await asyncio.to_thread(requests.get, base + "jupyter-audit/api/me", headers=cookies)
        body = r.json()
        assert r.status_code == 401 and body["reason"] == "session_expired"
        assert body["login_url"] == jp_base_url + "login"
        assert "session expired" in body["message"]
        r = await asyncio.to_thread(requests.get, base + "api/sessions", headers=cookies)
        assert r.status_code == 403
        assert r.json()["message"] == "Your session has ended: sign in again (it expired)"
        assert any("session expired" in r for r in rejections(jp_serverapp))
        trail = json.dumps(trail_events(jp_serverapp.web_app.settings["jupyter_audit"]))
        assert all(c.value not in trail for c in s.cookies)


def workspace(layout: str) -> dict:
    return {
        "data": {"layout-restorer:data": {"main": {"current": f"notebook:{layout}"}}},
        "metadata": {"id": "default"},
    }


class TestWorkspacesPerUser:
    @pytest.fixture
    def jp_server_config(self, trail_dir, provider, tmp_path):
        cfg = session_config(trail_dir, provider.issuer)
        cfg["ServerApp"]["jpserver_extensions"]["jupyterlab"] = True
        cfg["LabApp"] = {"workspaces_dir": str(tmp_path / "workspaces")}
        return cfg

    async def test_each_user_gets_their_own_default_workspace(
        self, jp_serverapp, jp_fetch, jp_http_port, jp_base_url, provider, tmp_path
    ):
        base = f"http://localhost:{jp_http_port}{jp_base_url}"
        url = base + "lab/api/workspaces/default"
        alice_token = (await asyncio.to_thread(provider.tokens, "alice-sub", CLIENT))["id_token"]

        def browsers():
            # alice saves her layout (JupyterLab PUTs it as she works)
            put = requests.put(
                url,
                data=json.dumps(workspace("alice-secret-analysis.ipynb")),
                headers={"Authorization": f"Bearer {alice_token}"},
            )
            assert put.status_code == 204, put.text
            bob = sign_in(base, provider, "bob-sub")
            alice = sign_in(base, provider, "alice-sub")
            anonymous = requests.get(url, headers={"Authorization": ""})
            # bob names alice's directory: the name is a slug inside his own
            alice_dir = next((tmp_path / "workspaces" / "users").iterdir()).name
            for name in (f"..%2F{alice_dir}%2Fdefault", f"../{alice_dir}/default"):
                sneaky = bob.get(base + "lab/api/workspaces/" + name)
                assert "alice-secret-analysis" not in sneaky.text, name
            return bob.get(url), bob.get(base + "lab/api/workspaces"), alice.get(url), anonymous

        bob_default, bob_list, alice_default, anonymous = await asyncio.to_thread(browsers)
        assert bob_default.status_code == 200
        assert "alice-secret-analysis" not in bob_default.text
        assert bob_default.json()["data"] == {}
        assert "alice-secret-analysis" not in bob_list.text
        assert alice_default.status_code == 200
        current = alice_default.json()["data"]["layout-restorer:data"]["main"]["current"]
        assert current == "notebook:alice-secret-analysis.ipynb"
        assert anonymous.status_code == 403
        # nothing in the shared directory, no name on disk
        saved = list((tmp_path / "workspaces").rglob("*.jupyterlab-workspace"))
        assert len(saved) == 1 and saved[0].parent.parent.name == "users"
        assert "alice" not in str(saved[0])


class TestNothingOutlivesLogout:
    """An insider keeps a copy of their session cookie, or a websocket, and signs out: nothing
    they kept still works afterwards."""

    @pytest.fixture
    def jp_server_config(self, trail_dir, provider):
        return session_config(trail_dir, provider.issuer)

    async def test_signing_in_again_ends_the_browsers_earlier_session(
        self, jp_serverapp, jp_fetch, jp_http_port, jp_base_url, provider
    ):
        """A second sign-in in the same browser replaces its cookie: the session the earlier
        cookie named must end then, or a copy of it outlives the browser's `/logout`."""
        base = f"http://localhost:{jp_http_port}{jp_base_url}"
        s = await asyncio.to_thread(sign_in, base, provider, "alice-sub")
        first = cookie_header(s)

        def again():
            r = s.get(base + "login", allow_redirects=False)
            r = s.get(provider.approve(r.headers["Location"], "alice-sub"), allow_redirects=False)
            assert r.status_code == 302, r.text
            assert cookie_header(s) != first
            assert s.get(base + "jupyter-audit/api/me").status_code == 200
            s.get(base + "logout", allow_redirects=False)
            return requests.get(base + "jupyter-audit/api/me", headers=first)

        r = await asyncio.to_thread(again)
        assert r.status_code == 401, r.text
        assert r.json()["reason"] == "session_ended"

    async def test_logout_closes_the_sessions_event_stream(
        self, jp_serverapp, jp_fetch, jp_ws_fetch, jp_http_port, jp_base_url, provider
    ):
        """jupyter_server's event stream (`/api/events/subscribe`: who saved which file, kernel
        actions) is a websocket the session opened like any other."""
        base = f"http://localhost:{jp_http_port}{jp_base_url}"
        s = await asyncio.to_thread(sign_in, base, provider, "alice-sub")
        ws = await jp_ws_fetch("api", "events", "subscribe", headers=dict(cookie_header(s)))
        await asyncio.to_thread(s.get, base + "logout", allow_redirects=False)
        assert await closed(ws) == (CLOSE_CODE, SESSION_ENDED)
