"""OIDC sign-in against real issuers over HTTP: the `oidc-provider-mock` package for the
browser flow, bearer ID tokens and opaque access tokens; an issuer of the tests' own
(tests/helpers/oidc.KeyIssuer) for key rotation, unknown key ids, bad signatures and any
claims. A refused credential gets a clear 401 and nothing is recorded under its identity."""

import asyncio
import base64
import email.utils
import json
import logging
import time
from urllib.parse import parse_qs, urlparse

import jwt
import pytest
import requests
from helpers.kernels import open_kernel
from helpers.oidc import CLIENT, MockProvider, oidc_config, provider_fixture
from helpers.servers import free_port
from helpers.trail import trail_events
from tornado.httpclient import HTTPClientError
from tornado.websocket import WebSocketClosedError

from jupyter_audit.server.sockets import TOKEN_EXPIRED

ALICE = {
    "preferred_username": "alice",
    "email": "alice@example.org",
    "name": "Alice Auditor",
    "groups": ["audit-auditors", "risk"],
}
BOB = {"preferred_username": "bob", "email": "bob@example.org", "groups": ["analysts"]}

provider = provider_fixture({"alice-sub": ALICE, "bob-sub": BOB})


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def api(jp_fetch, *parts, token=None, headers=None, **kw):
    h = headers if headers is not None else (bearer(token) if token else {"Authorization": ""})
    r = await jp_fetch("jupyter-audit", "api", *parts, headers=h, **kw)
    return json.loads(r.body)


async def refused(jp_fetch, *parts, token=None, headers=None, **kw) -> tuple[int, str]:
    with pytest.raises(HTTPClientError) as e:
        await api(jp_fetch, *parts, token=token, headers=headers, **kw)
    return e.value.code, json.loads(e.value.response.body)["message"]


def usernames_in_trail(jp_serverapp) -> set[str]:
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    return {e["identity"]["username"] for e in trail_events(audit) if e["identity"]}


class TestMockProvider:
    @pytest.fixture
    def jp_server_config(self, trail_dir, provider):
        return oidc_config(trail_dir, provider.issuer)

    async def test_browser_sign_in_with_pkce_then_sign_out(
        self, jp_serverapp, jp_fetch, jp_http_port, jp_base_url, provider
    ):
        base = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
        me_url = base + "jupyter-audit/api/me"

        def browser():
            s = requests.Session()
            r = s.get(base + "login", params={"next": jp_base_url + "lab"}, allow_redirects=False)
            assert r.status_code == 302
            authorize = r.headers["Location"]
            q = parse_qs(urlparse(authorize).query)
            assert authorize.startswith(provider.discovery["authorization_endpoint"])
            assert q["code_challenge_method"] == ["S256"] and q["nonce"] and q["state"]
            assert q["redirect_uri"] == [base + "oidc/callback"]
            callback = provider.approve(authorize, "alice-sub")
            flow_cookies = s.cookies.copy()
            r = s.get(callback, allow_redirects=False)
            assert r.status_code == 302 and r.headers["Location"] == jp_base_url + "lab"
            me = s.get(me_url).json()
            # the same sign-in response again: its nonce was used, it is refused
            replay = requests.get(callback, cookies=flow_cookies, allow_redirects=False)
            session_cookies = {c.name: c.value for c in s.cookies}
            r = s.get(base + "logout", allow_redirects=False)
            assert r.status_code == 302
            end = r.headers["Location"]
            assert end.startswith(provider.discovery["end_session_endpoint"])
            q = parse_qs(urlparse(end).query)
            assert q["post_logout_redirect_uri"] == [base] and q["client_id"] == [CLIENT]
            hint = jwt.decode(q["id_token_hint"][0], options={"verify_signature": False})
            assert hint["sub"] == "alice-sub" and CLIENT in str(hint["aud"])
            after = s.get(me_url)
            # the session cookie copied before signing out: the session ended on the server
            copied = requests.get(me_url, cookies=session_cookies)
            return me, replay, after, copied

        me, replay, after, copied = await asyncio.to_thread(browser)
        ident = me["identity"]
        assert ident["username"] == "alice" and ident["subject"] == "alice-sub"
        assert ident["issuer"] == provider.issuer and ident["email"] == "alice@example.org"
        assert ident["auth_method"] == "oidc" and ident["display_name"] == "Alice Auditor"
        assert set(ident["groups"]) == {"audit-auditors", "risk"}
        assert "auditor" in me["roles"] and "admin" not in me["roles"]
        assert replay.status_code == 403 and "replayed nonce" in replay.text
        assert after.status_code == 401
        assert copied.status_code == 401 and "session ended" in copied.json()["message"]
        events = trail_events(jp_serverapp.web_app.settings["jupyter_audit"])
        reasons = [e["payload"]["reason"] for e in events if e["kind"] == "security.rejected"]
        assert any("replayed nonce" in r for r in reasons), reasons
        assert any("session ended" in r for r in reasons), reasons
        assert "eyJ" not in json.dumps(events)  # neither the ID token nor the cookie

    async def test_bearer_id_token_runs_cells_attributed_over_the_websocket(
        self, jp_serverapp, jp_fetch, jp_ws_fetch, provider
    ):
        tokens = await asyncio.to_thread(provider.tokens, "bob-sub", CLIENT)
        h = bearer(tokens["id_token"])
        kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch, headers=h)
        status, out = await client.run("print(6 * 7)")
        assert (status, out.strip()) == ("ok", "42")
        client.ws.close()
        events = trail_events(jp_serverapp.web_app.settings["jupyter_audit"])
        req = next(e for e in events if e["kind"] == "cell.requested")
        assert req["trace_id"] == kernel_id
        ident = req["identity"]
        assert (ident["username"], ident["subject"], ident["issuer"]) == (
            "bob",
            "bob-sub",
            provider.issuer,
        )
        assert ident["auth_method"] == "oidc_id_token" and ident["groups"] == ["analysts"]
        me = await api(jp_fetch, "me", token=tokens["id_token"])
        assert me["roles"] == ["user"]

    async def test_opaque_access_token_via_userinfo_until_revoked(
        self, jp_serverapp, jp_fetch, provider
    ):
        tokens = await asyncio.to_thread(provider.tokens, "alice-sub", CLIENT)
        me = await api(jp_fetch, "me", token=tokens["access_token"])
        assert me["identity"]["username"] == "alice"
        assert me["identity"]["auth_method"] == "oidc_access_token"
        await asyncio.to_thread(provider.revoke_tokens, "alice-sub")
        code, message = await refused(jp_fetch, "me", token=tokens["access_token"])
        assert code == 401 and "refused by the issuer" in message

    async def test_wrong_client_id_token_is_refused(self, jp_serverapp, jp_fetch, provider):
        tokens = await asyncio.to_thread(provider.tokens, "bob-sub", "another-app")
        code, message = await refused(jp_fetch, "me", token=tokens["id_token"])
        assert code == 401 and "another audience" in message


def tamper(token: str, **changes) -> str:
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims.update(changes)
    raw = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{raw}.{sig}"


class TestKeyIssuer:
    @pytest.fixture
    def jp_server_config(self, trail_dir, issuer):
        return oidc_config(
            trail_dir,
            issuer.issuer,
            access_token_audiences=["audit-api"],
            groups_claim="realm_access.roles",
        )

    async def test_valid_tokens_key_rotation_and_nested_groups(self, jp_fetch, issuer):
        claims = issuer.claims(
            "sub-1", CLIENT, preferred_username="carol", realm_access={"roles": ["audit-admins"]}
        )
        me = await api(jp_fetch, "me", token=issuer.mint(claims))
        assert me["identity"]["groups"] == ["audit-admins"] and "admin" in me["roles"]
        # the issuer rotates its key: a token with the new key id makes the server refetch
        fetches = issuer.jwks_requests
        issuer.rotate(drop_old=True)
        me = await api(jp_fetch, "me", token=issuer.mint(claims))
        assert me["identity"]["username"] == "carol" and issuer.jwks_requests > fetches
        # a JWT access token for the configured API audience
        access = issuer.claims("sub-2", "audit-api", preferred_username="dave")
        me = await api(jp_fetch, "me", token=issuer.mint(access))
        assert me["identity"]["auth_method"] == "oidc_access_token"

    async def test_bad_tokens_are_refused_and_nothing_is_recorded_under_them(
        self, jp_serverapp, jp_fetch, jp_ws_fetch, issuer
    ):
        def claims(**extra):
            return issuer.claims("mallory-sub", CLIENT, preferred_username="mallory", **extra)

        stranger_kid, stranger_key = issuer.unpublished_key()
        good = issuer.mint(claims())
        cases = {
            "expired": (issuer.mint(claims(exp=1_000_000, iat=999_000)), "expired"),
            "wrong audience": (
                issuer.mint(issuer.claims("m", "other-app", preferred_username="mallory")),
                "another audience",
            ),
            "wrong issuer": (issuer.mint(claims(iss="https://evil.example")), "another issuer"),
            "bad signature": (
                issuer.mint(claims(), kid=issuer.current, key=stranger_key),
                "signature",
            ),
            "unknown key id": (
                issuer.mint(claims(), kid=stranger_kid, key=stranger_key),
                "unknown key id",
            ),
            "tampered claims": (tamper(good, preferred_username="eve-admin"), "signature"),
            "not yet valid": (issuer.mint(claims(nbf=4_000_000_000)), "not valid yet"),
            "no username claim": (
                issuer.mint(issuer.claims("s", CLIENT)),
                "no 'preferred_username' claim",
            ),
            "garbage": ("not-a-token", "not active"),
        }
        for name, (token, reason) in cases.items():
            code, message = await refused(jp_fetch, "me", token=token)
            assert code == 401, name
            assert reason in message, (name, message)
            # the kernel API refuses too: no websocket, no cell under that identity
            with pytest.raises(HTTPClientError) as e:
                await open_kernel(jp_fetch, jp_ws_fetch, headers=bearer(token))
            assert e.value.code == 403, name
        assert "mallory" not in usernames_in_trail(jp_serverapp)
        assert "eve-admin" not in usernames_in_trail(jp_serverapp)
        events = trail_events(jp_serverapp.web_app.settings["jupyter_audit"])
        rejected = [e["payload"]["reason"] for e in events if e["kind"] == "security.rejected"]
        assert any("expired" in r for r in rejected) and any("signature" in r for r in rejected)
        assert "eyJ" not in json.dumps(events)  # no token in the trail

    async def test_opaque_tokens_must_be_issued_to_this_client(self, jp_fetch, issuer):
        claims = {"sub": "s9", "preferred_username": "olga"}
        issuer.opaque["opaque-ours"] = (CLIENT, claims)
        issuer.opaque["opaque-theirs"] = ("some-other-app", claims)
        me = await api(jp_fetch, "me", token="opaque-ours")
        assert me["identity"]["username"] == "olga"
        assert me["identity"]["auth_method"] == "oidc_access_token"
        code, message = await refused(jp_fetch, "me", token="opaque-theirs")
        assert code == 401 and "another client" in message

    async def test_a_bearer_request_never_becomes_a_cookie_session(self, jp_fetch, issuer):
        token = issuer.mint(issuer.claims("s", CLIENT, preferred_username="una"))
        r = await jp_fetch("api", "status", headers=bearer(token))
        assert r.code == 200 and not r.headers.get_list("Set-Cookie")

    async def test_an_expired_token_stops_its_open_websocket(
        self, jp_serverapp, jp_fetch, jp_ws_fetch, issuer
    ):
        # long enough for a kernel to start on a slow machine, then wait it out
        claims = issuer.claims("s", CLIENT, lifetime=15, preferred_username="una")
        token = issuer.mint(claims)
        _kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch, headers=bearer(token))
        assert (await client.run("1"))[0] == "ok"

        async def until_closed():
            while await client.ws.read_message() is not None:
                pass

        # closed by the server when the token expires, saying why
        await asyncio.wait_for(until_closed(), max(0, claims["exp"] - time.time()) + 30)
        assert (client.ws.close_code, client.ws.close_reason) == (4001, TOKEN_EXPIRED)
        with pytest.raises(WebSocketClosedError):
            client.send_execute("print('after expiry')")
        codes = [
            e["payload"]["code"]
            for e in trail_events(jp_serverapp.web_app.settings["jupyter_audit"])
            if e["kind"] == "cell.requested"
        ]
        assert codes == ["1"]

    async def test_a_flood_of_bad_tokens_is_recorded_as_counts(self, jp_serverapp, jp_fetch):
        for _ in range(60):
            await refused(jp_fetch, "me", token="x.y.z")
        events = trail_events(jp_serverapp.web_app.settings["jupyter_audit"])
        rejected = [e for e in events if e["kind"] == "security.rejected"]
        assert 1 <= len(rejected) <= 25

    async def test_algorithm_none_and_hmac_are_refused(self, jp_fetch, issuer):
        import jwt

        claims = issuer.claims("m", CLIENT, preferred_username="mallory")
        unsigned = jwt.encode(claims, None, algorithm="none")
        hmac = jwt.encode(claims, "x" * 32, algorithm="HS256")
        for token in (unsigned, hmac):
            code, message = await refused(jp_fetch, "me", token=token)
            assert code == 401 and "algorithm" in message


# every user-facing endpoint: (method, path parts, role it needs or None for any user)
ENDPOINTS = [
    ("GET", ("me",), None),
    ("GET", ("traces",), None),
    ("GET", ("traces?user=someone-else",), "auditor"),
    ("GET", ("traces", "OTHER"), "auditor"),
    ("GET", ("verify",), "auditor"),
    ("GET", ("export",), "auditor"),
    ("GET", ("tokens",), "admin"),
    ("POST", ("tokens",), "admin"),
    ("GET", ("tokens", "0123456789abcdef"), "admin"),
    ("DELETE", ("tokens", "0123456789abcdef"), "admin"),
]


class TestEveryEndpoint:
    """401 without credentials, 403 without the role, for each endpoint, with real tokens."""

    @pytest.fixture
    def jp_server_config(self, trail_dir, issuer):
        return oidc_config(trail_dir, issuer.issuer)

    @pytest.mark.parametrize("method,parts,role", ENDPOINTS, ids=lambda v: str(v))
    async def test_endpoint(self, jp_serverapp, jp_fetch, issuer, method, parts, role):
        audit = jp_serverapp.web_app.settings["jupyter_audit"]
        other = audit.writer.append(
            {
                "kind": "cell.requested",
                "identity": {"username": "someone-else", "auth_method": "oidc"},
                "trace_id": "OTHER",
                "kernel_id": "OTHER",
                "msg_id": "m1",
                "payload": {"code": "1", "cell_id": None, "silent": False},
            }
        )
        assert other.seq
        *head, last = parts
        path, _, query = last.partition("?")
        params = dict([query.split("=")]) if query else None
        kw = {"method": method, "params": params, "allow_nonstandard_methods": True}
        if method == "POST":
            kw["body"] = json.dumps({"service_account": "x", "owner": "a@example.org"})
        code, message = await refused(jp_fetch, *head, path, **kw)
        assert code == 401 and "authentication required" in message
        plain = issuer.mint(issuer.claims("u1", CLIENT, preferred_username="una"))
        if role is None:
            await api(jp_fetch, *head, path, token=plain, **kw)
            return
        code, message = await refused(jp_fetch, *head, path, token=plain, **kw)
        assert code == 403 and f"{role} role" in message
        group = {"auditor": "audit-auditors", "admin": "audit-admins"}[role]
        holder = issuer.mint(issuer.claims("u2", CLIENT, preferred_username="rita", groups=[group]))
        try:
            await api(jp_fetch, *head, path, token=holder, **kw)
        except HTTPClientError as e:
            assert e.code == 404, (e.code, e.response.body)  # allowed; the token id is unknown


class TestSessionExpiry:
    @pytest.fixture
    def jp_server_config(self, trail_dir, provider):
        # a session's expiry is a whole second: it lasts between 2 and 3 s
        return oidc_config(trail_dir, provider.issuer, session_lifetime=3)

    async def test_browser_session_expires(self, jp_fetch, jp_http_port, jp_base_url, provider):
        base = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"

        def browser():
            s = requests.Session()
            r = s.get(base + "login", allow_redirects=False)
            r = s.get(provider.approve(r.headers["Location"], "bob-sub"), allow_redirects=False)
            set_cookie = r.headers["Set-Cookie"]
            first = s.get(base + "jupyter-audit/api/me")
            kept = {c.name: c.value for c in s.cookies}
            time.sleep(3.2)
            # a browser drops the cookie (its max-age is the session's); a client that kept it
            # anyway is told the session expired
            return set_cookie, first, s.get(base + "jupyter-audit/api/me"), kept

        set_cookie, first, later, kept = await asyncio.to_thread(browser)
        assert first.status_code == 200 and first.json()["username"] == "bob"
        assert later.status_code == 401
        max_age = int(set_cookie.split("Max-Age=")[1].split(";")[0])
        assert 0 < max_age <= 3
        expires = email.utils.parsedate_to_datetime(set_cookie.split("expires=")[1].split(";")[0])
        assert expires.timestamp() <= time.time() + 3

        def replay():
            return requests.get(base + "jupyter-audit/api/me", cookies=kept)

        late = await asyncio.to_thread(replay)
        assert late.status_code == 401 and "session expired" in late.json()["message"]


async def test_userinfo_answers_are_cached_briefly(provider):
    from jupyter_audit.identity.oidc import OIDCError, OIDCIdentityProvider

    idp = OIDCIdentityProvider(issuer=provider.issuer, client_id=CLIENT, userinfo_cache_seconds=60)
    tokens = await asyncio.to_thread(provider.tokens, "bob-sub", CLIENT)
    claims, method = await idp.bearer_claims(tokens["access_token"])
    assert claims["sub"] == "bob-sub" and method == "oidc_access_token"
    await asyncio.to_thread(provider.revoke_tokens, "bob-sub")
    # within the cache window the answer is reused; a fresh provider asks again and is refused
    assert (await idp.bearer_claims(tokens["access_token"]))[0]["sub"] == "bob-sub"
    fresh = OIDCIdentityProvider(issuer=provider.issuer, client_id=CLIENT)
    with pytest.raises(OIDCError, match="refused by the issuer"):
        await fresh.bearer_claims(tokens["access_token"])


def test_client_secret_from_value_file_or_environment(tmp_path, monkeypatch):
    from jupyter_audit.identity.oidc import OIDCIdentityProvider

    assert OIDCIdentityProvider(client_secret="v").secret() == "v"
    f = tmp_path / "secret"
    f.write_text("from-file\n")
    assert OIDCIdentityProvider(client_secret_file=str(f)).secret() == "from-file"
    monkeypatch.setenv("JUPYTER_AUDIT_OIDC_CLIENT_SECRET", "from-env")
    assert OIDCIdentityProvider().secret() == "from-env"


# ---------------------------------------------------------------- failed sign-ins (issue 12)
def rejections(jp_serverapp) -> list[str]:
    events = trail_events(jp_serverapp.web_app.settings["jupyter_audit"])
    return [e["payload"]["reason"] for e in events if e["kind"] == "security.rejected"]


def start_sign_in(base: str, provider, sub: str) -> tuple[requests.Session, str]:
    """A browser at /login, approved at the issuer as `sub`: (its session, the callback URL)."""
    s = requests.Session()
    r = s.get(base + "login", allow_redirects=False)
    assert r.status_code == 302, r.text
    return s, provider.approve(r.headers["Location"], sub)


class TestFailedSignIns:
    @pytest.fixture
    def jp_server_config(self, trail_dir, provider):
        return oidc_config(trail_dir, provider.issuer)

    async def test_each_failed_sign_in_is_recorded_without_claim_values(
        self, jp_serverapp, jp_fetch, jp_http_port, jp_base_url, provider
    ):
        base = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
        provider.set_user("nameless-sub", {"email": "nameless@example.org", "name": "No Name"})

        def browser():
            answers = {}
            s, callback = start_sign_in(base, provider, "nameless-sub")
            answers["no username"] = s.get(callback, allow_redirects=False)
            s, callback = start_sign_in(base, provider, "alice-sub")
            bad_state = callback.replace("state=", "state=x")
            answers["state"] = s.get(bad_state, allow_redirects=False)
            s, callback = start_sign_in(base, provider, "alice-sub")
            sep = "&" if "?" in callback else "?"
            mixed_up = callback + sep + "iss=https%3A%2F%2Fevil.example"
            answers["issuer"] = s.get(mixed_up, allow_redirects=False)
            # a sign-in response without the browser's sign-in in progress
            answers["no flow"] = requests.get(callback, allow_redirects=False)
            # an error "from the provider" in a link anyone can send: its free text never
            # reaches this server's page, only a sanitised error code
            answers["forged error"] = requests.get(
                base + "oidc/callback",
                params={
                    "error": "access_denied<b>\n",
                    "error_description": "Your account is locked: call +1 555 0100",
                },
                allow_redirects=False,
            )
            # the same error in answer to this browser's own sign-in keeps the description
            s, callback = start_sign_in(base, provider, "alice-sub")
            state = parse_qs(urlparse(callback).query)["state"][0]
            answers["provider error"] = s.get(
                base + "oidc/callback",
                params={
                    "error": "access_denied",
                    "error_description": "consent refused",
                    "state": state,
                },
                allow_redirects=False,
            )
            return answers

        answers = await asyncio.to_thread(browser)
        expected = {
            "no username": (403, "no 'preferred_username' claim"),
            "state": (400, "state does not match"),
            "issuer": (403, "from another issuer"),
            "no flow": (400, "no sign-in in progress"),
        }
        forged = answers["forged error"]
        assert forged.status_code == 403 and "access_denied?b?" in forged.text
        assert "locked" not in forged.text and "<b>" not in forged.text
        assert "access_denied: consent refused" in answers["provider error"].text
        for name, (code, reason) in expected.items():
            assert answers[name].status_code == code, (name, answers[name].text)
            assert reason in answers[name].text, (name, answers[name].text)
        reasons = rejections(jp_serverapp)
        for name, (_code, reason) in expected.items():
            assert any(r.startswith("sign-in refused") and reason in r for r in reasons), (
                name,
                reasons,
            )
        trail = json.dumps(trail_events(jp_serverapp.web_app.settings["jupyter_audit"]))
        assert "nameless@example.org" not in trail and "No Name" not in trail
        assert "nameless" not in usernames_in_trail(jp_serverapp)
        assert "eyJ" not in trail


class TestExpiredSignIn:
    @pytest.fixture
    def jp_server_config(self, trail_dir, provider):
        return oidc_config(trail_dir, provider.issuer, sign_in_timeout=2)

    async def test_a_late_sign_in_response_is_refused_and_recorded(
        self, jp_serverapp, jp_fetch, jp_http_port, jp_base_url, provider
    ):
        base = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"

        def browser():
            s, callback = start_sign_in(base, provider, "alice-sub")
            flow = {c.name: c.value for c in s.cookies}  # kept past its max-age
            assert flow
            time.sleep(2.5)
            return requests.get(callback, cookies=flow, allow_redirects=False)

        r = await asyncio.to_thread(browser)
        assert r.status_code == 400 and "sign-in response expired" in r.text
        assert any("sign-in response expired" in r for r in rejections(jp_serverapp))


@pytest.fixture(scope="module")
def registering_provider():
    """An issuer that knows its clients and their secrets (a wrong secret is refused)."""
    p = MockProvider("--require-registration")
    p.set_user("alice-sub", ALICE)
    yield p
    p.stop()


class TestWrongClientSecret:
    @pytest.fixture
    def jp_server_config(self, trail_dir, registering_provider, jp_http_port, jp_base_url):
        callback = f"http://127.0.0.1:{jp_http_port}{jp_base_url}oidc/callback"
        r = requests.post(
            registering_provider.issuer + "/oauth2/clients",
            json={"redirect_uris": [callback]},
            timeout=10,
        )
        r.raise_for_status()
        cfg = oidc_config(trail_dir, registering_provider.issuer)
        cfg["OIDCIdentityProvider"]["client_id"] = r.json()["client_id"]
        cfg["OIDCIdentityProvider"]["client_secret"] = "not-the-registered-secret"
        return cfg

    async def test_the_message_names_the_settings(
        self, jp_serverapp, jp_fetch, jp_http_port, jp_base_url, registering_provider
    ):
        base = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"

        def browser():
            s, callback = start_sign_in(base, registering_provider, "alice-sub")
            return s.get(callback, allow_redirects=False)

        r = await asyncio.to_thread(browser)
        assert r.status_code == 403, r.text
        assert "code exchange refused (HTTP 401 invalid_client)" in r.text
        assert "c.OIDCIdentityProvider.client_id and client_secret_file" in r.text
        reasons = rejections(jp_serverapp)
        assert any("code exchange refused (HTTP 401 invalid_client)" in r for r in reasons)
        assert "not-the-registered-secret" not in json.dumps(reasons)


class TestProviderUnreachableDuringSignIn:
    @pytest.fixture
    def lone_provider(self):
        p = MockProvider()
        yield p
        p.stop()

    @pytest.fixture
    def jp_server_config(self, trail_dir, lone_provider):
        return oidc_config(trail_dir, lone_provider.issuer, http_timeout=5.0)

    async def test_an_issuer_gone_before_the_code_exchange_is_503_try_again(
        self, jp_serverapp, jp_fetch, jp_http_port, jp_base_url, lone_provider
    ):
        base = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"

        def browser():
            s, callback = start_sign_in(base, lone_provider, "carol-sub")
            lone_provider.stop()
            return s.get(callback, allow_redirects=False)

        r = await asyncio.to_thread(browser)
        assert r.status_code == 503 and "could not be reached; try again" in r.text
        assert "refused" not in r.text
        assert not any("sign-in" in r for r in rejections(jp_serverapp))


class TestIssuerDownAtStart:
    @pytest.fixture
    def jp_server_config(self, trail_dir):
        dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        secret = trail_dir / "oidc-secret"
        secret.write_text("s3cr3t-never-logged\n")
        return oidc_config(
            trail_dir, dead, client_secret="", client_secret_file=str(secret), http_timeout=5.0
        )

    async def test_start_up_warns_and_sign_in_says_try_again(
        self, caplog, jp_serverapp, jp_fetch, jp_http_port, jp_base_url
    ):
        def logged():
            records = caplog.get_records("setup") + caplog.get_records("call")
            return [(r.levelname, r.getMessage()) for r in records]

        deadline = time.monotonic() + 30
        while not any("could not be read" in m for _, m in logged()):
            assert time.monotonic() < deadline, logged()
            await asyncio.sleep(0.1)
        idp = jp_serverapp.identity_provider
        # the line validate_security logs at start (jupyter_server's start-up logging is not
        # seen by caplog, so it is asked for again here)
        caplog.set_level(logging.INFO, logger="test-oidc-start")
        idp.log_configuration(logging.getLogger("test-oidc-start"))
        started = [m for lvl, m in logged() if "OIDC sign-in with issuer" in m]
        assert started and idp.issuer in started[0] and repr(CLIENT) in started[0]
        warning = [lvl for lvl, m in logged() if "could not be read" in m]
        assert warning == ["WARNING"]
        assert not any("s3cr3t-never-logged" in m for _, m in logged())

        base = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
        r = await asyncio.to_thread(requests.get, base + "login", allow_redirects=False)
        assert r.status_code == 503 and "could not be reached; try again" in r.text
