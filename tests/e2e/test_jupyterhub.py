"""Identity under JupyterHub.

Unit tests of jupyter_audit.identity.hub, then a real JupyterHub (configurable-http-proxy from
npm, GenericOAuthenticator against a real OIDC provider, local single-user servers with
jupyter-audit): a person signs in once at the Hub, and the single-user server records cells
with their Hub name and groups and, through the auth_state hook, their OIDC subject, issuer
and email. Another Hub user let into that server is recorded as themselves."""

from __future__ import annotations

import json
import logging
import time
from types import SimpleNamespace

import pytest
from helpers.hub import Hub, Kernel, find_chp
from helpers.servers import run_cli

from jupyter_audit.identity import hub as hubid

# -- unit: the hook in the Hub and the snapshot in the single-user server ----------------------


def _jwt(claims: dict) -> str:
    import base64

    def b64(d):
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'RS256'})}.{b64(claims)}.c2ln"


AUTH_STATE = {
    "access_token": "opaque-access",
    "refresh_token": None,
    "id_token": _jwt({"iss": "https://idp.test", "sub": "sub-alice", "aud": "jupyterhub"}),
    "scope": ["openid", "profile", "email"],
    "token_response": {},
    "oauth_user": {
        "sub": "sub-alice",
        "preferred_username": "alice",
        "email": "alice@example.org",
        "name": "Alice Example",
        "groups": ["audit-auditors", "data-science"],
    },
}


def fake_spawner(name="alice", environment=None, **authenticator):
    auth = SimpleNamespace(user_auth_state_key="oauth_user", **authenticator)
    return SimpleNamespace(
        user=SimpleNamespace(name=name),
        authenticator=auth,
        environment=environment if environment is not None else {"KEEP": "1"},
        log=logging.getLogger("test-spawner"),
    )


@pytest.fixture
def fresh_cache(monkeypatch):
    monkeypatch.setattr(hubid, "_parsed", (None, {}))


def hub_user(name, groups=(), kind="user"):
    from jupyterhub.singleuser.extension import JupyterHubUser

    return JupyterHubUser({"kind": kind, "name": name, "groups": list(groups), "scopes": []})


def test_auth_state_hook_passes_only_the_claims_to_the_server():
    shared = {"KEEP": "1"}
    spawner = fake_spawner(environment=shared)
    hubid.auth_state_hook(spawner, AUTH_STATE)
    assert shared == {"KEEP": "1"}  # the configured dict is not mutated
    env = spawner.environment
    assert env["KEEP"] == "1"
    claims = json.loads(env[hubid.ENV])
    assert claims == {
        "sub": "sub-alice",
        "iss": "https://idp.test",
        "email": "alice@example.org",
        "name": "Alice Example",
        "groups": ["audit-auditors", "data-science"],
        "user": "alice",
    }
    assert "opaque-access" not in env[hubid.ENV]  # no tokens leave the Hub


def test_auth_state_hook_follows_the_authenticators_groups_key_and_tolerates_no_state():
    state = {**AUTH_STATE, "perms": {"teams": ["audit-reviewers"]}}
    spawner = fake_spawner(auth_state_groups_key="perms.teams")
    hubid.auth_state_hook(spawner, state)
    assert json.loads(spawner.environment[hubid.ENV])["groups"] == ["audit-reviewers"]
    # auth_state disabled, or a stale value from an earlier spawn: nothing is passed
    spawner = fake_spawner(environment={hubid.ENV: '{"sub": "stale"}'})
    hubid.auth_state_hook(spawner, None)
    assert hubid.ENV not in spawner.environment


def test_snapshot_for_the_owner_carries_the_oidc_claims(monkeypatch, fresh_cache):
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    spawner = fake_spawner()
    hubid.auth_state_hook(spawner, AUTH_STATE)
    monkeypatch.setenv(hubid.ENV, spawner.environment[hubid.ENV])
    snap = hubid.snapshot_for_hub_user(hub_user("alice", ["hub-group"]))
    assert snap["username"] == "alice" and snap["auth_method"] == "jupyterhub"
    assert snap["subject"] == "sub-alice" and snap["issuer"] == "https://idp.test"
    assert snap["email"] == "alice@example.org" and snap["display_name"] == "Alice Example"
    assert snap["groups"] == ["audit-auditors", "data-science", "hub-group"]


def test_other_hub_users_on_a_shared_server_never_get_the_owners_claims(monkeypatch, fresh_cache):
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    monkeypatch.setenv(hubid.ENV, json.dumps({"sub": "sub-alice", "email": "a@x", "user": "alice"}))
    snap = hubid.snapshot_for_hub_user(hub_user("bob", ["data-science"]))
    assert snap["username"] == "bob" and snap["groups"] == ["data-science"]
    assert snap["subject"] is None and snap["email"] is None and snap["issuer"] is None
    svc = hubid.snapshot_for_hub_user(hub_user("alice", kind="service"))
    assert svc["auth_method"] == "jupyterhub-service" and svc["subject"] is None


@pytest.mark.parametrize(
    "raw",
    ["{not json", "[1, 2]", '{"sub": "sub-alice", "user": "mallory"}'],
    ids=["unparseable", "not-an-object", "issued-for-someone-else"],
)
def test_unusable_claims_are_ignored_with_a_warning(monkeypatch, fresh_cache, caplog, raw):
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    monkeypatch.setenv(hubid.ENV, raw)
    with caplog.at_level(logging.WARNING, logger="jupyter_audit.identity.hub"):
        snap = hubid.snapshot_for_hub_user(hub_user("alice", ["data-science"]))
        hubid.snapshot_for_hub_user(hub_user("alice", ["data-science"]))
    assert snap["username"] == "alice" and snap["subject"] is None
    assert snap["groups"] == ["data-science"]
    warnings = [r for r in caplog.records if hubid.ENV in r.getMessage()]
    assert len(warnings) == 1  # once, not per request


def test_badly_typed_claims_are_dropped_one_by_one(monkeypatch, fresh_cache, caplog):
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    monkeypatch.setenv(hubid.ENV, json.dumps({"sub": "s", "email": ["x"], "groups": "admins"}))
    with caplog.at_level(logging.WARNING, logger="jupyter_audit.identity.hub"):
        snap = hubid.snapshot_for_hub_user(hub_user("alice"))
    assert snap["subject"] == "s" and snap["email"] is None and snap["groups"] == []
    assert len([r for r in caplog.records if r.name == hubid.log.name]) == 2


# -- a real JupyterHub ---------------------------------------------------------------------

ALICE = {
    "preferred_username": "alice",
    "email": "alice@example.org",
    "name": "Alice Example",
    "groups": ["audit-auditors", "data-science"],
}
BOB = {"preferred_username": "bob", "email": "bob@example.org", "groups": ["data-science"]}

# bob may use alice's server (as JupyterHub sharing or an admin role would allow)
HUB_EXTRA = """
c.JupyterHub.load_roles = [
    {"name": "alice-guests", "scopes": ["access:servers!user=alice"], "users": ["bob"]},
]
"""


@pytest.fixture(scope="module")
def provider():
    from helpers.oidc import MockProvider

    p = MockProvider()
    try:
        p.set_user("sub-alice", ALICE)
        p.set_user("sub-bob", BOB)
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def hub(request, tmp_path_factory):
    chp = find_chp()
    if chp is None:
        pytest.skip(
            "configurable-http-proxy not found (scripts/test installs it: "
            "npm install --prefix .cache/chp configurable-http-proxy@4)"
        )
    provider = request.getfixturevalue("provider")
    h = Hub(tmp_path_factory.mktemp("hub"), provider, chp, extra_config=HUB_EXTRA)
    try:
        yield h
    finally:
        h.stop()
        print("---- jupyterhub log (tail) ----\n" + h.log_tail(120))


@pytest.fixture(scope="module")
def alice(hub):
    """alice signed in at the Hub, with her single-user server running."""
    s = hub.login("sub-alice")
    hub.start_server(s, "alice")
    return s


def wait_trace(hub, s, owner, kernel_id, predicate, timeout=30):
    url = f"{hub.url}/user/{owner}/jupyter-audit/api/traces/{kernel_id}"
    deadline = time.monotonic() + timeout
    while True:
        r = s.get(url, timeout=30)
        events = r.json().get("events", []) if r.status_code == 200 else []
        if r.status_code == 200 and predicate(events):
            return events
        if time.monotonic() > deadline:
            raise AssertionError(f"trace {kernel_id}: {r.status_code} {r.text[:1000]}")
        time.sleep(0.25)


def test_hub_sign_in_reaches_the_single_user_server_and_its_trail(hub, provider, alice):
    # the browser opens its server: OAuth through the Hub, no second sign-in at the provider
    page = hub.open(alice, "/user/alice/lab")
    assert page.url.startswith(hub.url + "/user/alice/lab"), page.url
    assert not any(r.url.startswith(provider.issuer) for r in page.history)
    r = alice.get(hub.url + "/user/alice/jupyter-audit/api/me", timeout=30)
    assert r.status_code == 200, r.text
    me = r.json()
    ident = me["identity"]
    assert me["username"] == "alice"
    assert ident["auth_method"] == "jupyterhub"
    assert ident["subject"] == "sub-alice"
    assert ident["issuer"] == provider.issuer
    assert ident["email"] == "alice@example.org"
    assert ident["display_name"] == "Alice Example"
    assert {"audit-auditors", "data-science"} <= set(ident["groups"])
    assert "auditor" in me["roles"] and "reviewer" not in me["roles"]

    kernel = Kernel(hub, alice, "alice")
    try:
        assert kernel.run("print(6 * 7)") == ("ok", "42\n")
    finally:
        kernel.close()
    events = wait_trace(
        hub,
        alice,
        "alice",
        kernel.id,
        lambda ev: any(e["kind"] == "cell.finished" for e in ev),
    )
    requested = [e for e in events if e["kind"] == "cell.requested"]
    assert [e["payload"]["code"] for e in requested] == ["print(6 * 7)"]
    who = requested[0]["identity"]
    assert who["username"] == "alice" and who["auth_method"] == "jupyterhub"
    assert who["subject"] == "sub-alice" and who["issuer"] == provider.issuer
    assert who["email"] == "alice@example.org"
    assert "audit-auditors" in who["groups"]
    finished = next(e for e in events if e["kind"] == "cell.finished")
    assert finished["msg_id"] == requested[0]["msg_id"]


def test_another_hub_user_on_a_shared_server_is_recorded_as_themselves(hub, alice):
    bob = hub.login("sub-bob")
    # bob confirms the Hub's authorization form for alice's server (not his own)
    hub.open(bob, "/user/alice/lab")
    me = bob.get(hub.url + "/user/alice/jupyter-audit/api/me", timeout=30).json()
    ident = me["identity"]
    assert ident["username"] == "bob" and ident["auth_method"] == "jupyterhub"
    assert ident["groups"] == ["data-science"]  # his Hub groups, not alice's claims
    assert ident["subject"] is None and ident["email"] is None and ident["issuer"] is None
    assert me["roles"] == ["user"]

    # alice and bob run cells in the same kernel; each cell is attributed to its sender
    kernel = Kernel(hub, alice, "alice")
    try:
        assert kernel.run("x = 'alice'")[0] == "ok"
        guest = Kernel(hub, bob, "alice", kernel_id=kernel.id)
        try:
            assert guest.run("y = 'bob'")[0] == "ok"
        finally:
            guest.close()
    finally:
        kernel.close()
    events = wait_trace(
        hub,
        alice,
        "alice",
        kernel.id,
        lambda ev: sum(e["kind"] == "cell.requested" for e in ev) >= 2,
    )
    by_code = {e["payload"]["code"]: e["identity"] for e in events if e["kind"] == "cell.requested"}
    assert by_code["x = 'alice'"]["subject"] == "sub-alice"
    assert by_code["y = 'bob'"]["username"] == "bob"
    assert by_code["y = 'bob'"]["subject"] is None


def test_the_trail_file_verifies_and_names_the_oidc_identity_after_the_server_stops(hub, alice):
    import duckdb

    from jupyter_audit.store.queries import IdentityCache

    hub.stop_server(alice, "alice")
    trail = hub.trail("alice")
    code, out, err = run_cli("verify", "--db", str(trail))
    assert code == 0, out + err
    con = duckdb.connect(str(trail), read_only=True)
    try:
        ids = IdentityCache(con.cursor())
        rows = con.execute(
            "SELECT record FROM events WHERE kind = 'cell.requested' ORDER BY seq"
        ).fetchall()
        who = [ids.get(json.loads(rec)["identity_id"]) for (rec,) in rows]
    finally:
        con.close()
    alices = [w for w in who if w["username"] == "alice"]
    assert alices and all(w["subject"] == "sub-alice" for w in alices)
    assert all(w["email"] == "alice@example.org" for w in alices)
    assert all(w["subject"] is None for w in who if w["username"] != "alice")
