"""Service-account tokens on a real server and a real trail file: created by an admin (REST
and CLI), shown once, stored hashed, used over REST and the kernel websocket, revoked with
immediate effect (open websockets closed), and everything recorded."""

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from helpers.kernels import open_kernel
from helpers.servers import run_cli, server_config
from helpers.trail import ALICE, sql_event, trail_events
from tornado.httpclient import HTTPClientError

from jupyter_audit.cli import main as cli_main


def secret_of(token: str) -> str:
    """The secret part of `jat_<id>_<secret>` (the secret itself may hold underscores)."""
    secret = token.split("_", 2)[2]
    assert len(secret) >= 40
    return secret


@pytest.fixture
def jp_server_config(trail_dir):
    return server_config(trail_dir / "trail.duckdb")


async def call(jp_fetch, *parts, token=None, **kw):
    headers = {"Authorization": f"token {token}"} if token else {}
    r = await jp_fetch("jupyter-audit", "api", *parts, headers=headers, **kw)
    return json.loads(r.body) if r.body else None


async def refused(jp_fetch, *parts, **kw) -> tuple[int, str]:
    with pytest.raises(HTTPClientError) as e:
        await call(jp_fetch, *parts, **kw)
    return e.value.code, json.loads(e.value.response.body)["message"]


async def create(jp_fetch, **body):
    body = {"service_account": "contractor-etl", "owner": "ada@example.org", **body}
    return await call(jp_fetch, "tokens", method="POST", body=json.dumps(body))


async def test_admin_creates_a_token_that_runs_cells_until_revoked(
    jp_serverapp, jp_fetch, jp_ws_fetch, trail_dir
):
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    made = await create(jp_fetch, expires="30d")
    token, token_id = made["token"], made["id"]
    assert token.startswith(f"jat_{token_id}_") and made["state"] == "active"
    listed = await call(jp_fetch, "tokens")
    assert [t["id"] for t in listed["tokens"]] == [token_id]
    assert secret_of(token) not in json.dumps(listed)  # never shown again

    me = await call(jp_fetch, "me", token=token)
    ident = me["identity"]
    assert (ident["username"], ident["auth_method"]) == ("contractor-etl", "service_token")
    assert (ident["token_id"], ident["token_owner"]) == (token_id, "ada@example.org")
    assert me["roles"] == ["user"]
    code, message = await refused(jp_fetch, "tokens", token=token)
    assert code == 403 and "admin role" in message

    h = {"Authorization": f"token {token}"}
    kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch, headers=h)
    assert (await client.run("print(1 + 1)"))[0] == "ok"
    revoked = await call(
        jp_fetch,
        "tokens",
        token_id,
        method="DELETE",
        body=json.dumps({"reason": "left"}),
        allow_nonstandard_methods=True,
    )
    assert revoked["state"] == "revoked"
    # the open websocket is closed at once, and the next request is refused
    assert await asyncio.wait_for(client.ws.read_message(), 10) is None
    code, message = await refused(jp_fetch, "me", token=token)
    assert code == 401 and "revoked" in message
    with pytest.raises(HTTPClientError) as e:
        await open_kernel(jp_fetch, jp_ws_fetch, headers=h, kernel_id=kernel_id)
    assert e.value.code == 403

    events = trail_events(audit)
    kinds = [e["kind"] for e in events]
    assert "token.created" in kinds and "token.revoked" in kinds
    cell = next(e for e in events if e["kind"] == "cell.requested")
    assert cell["identity"]["username"] == "contractor-etl"
    assert cell["identity"]["token_id"] == token_id
    assert secret_of(token) not in json.dumps(events)  # the secret is nowhere in the trail
    v = await call(jp_fetch, "verify")
    assert v["ok"] is True, v


async def test_bad_token_requests_get_clear_errors(jp_fetch):
    for body, expected in (
        ({"owner": "nobody"}, "email address"),
        ({"service_account": "bad name!"}, "service account"),
        ({"expires": "-1d"}, "duration"),
        ({"expires": "2001-01-01"}, "future"),
        ({"expires": "900d"}, "at most"),
        ({"expires": 30}, "must be a string"),
        ({"service_account": ["x"]}, "service account"),
    ):
        with pytest.raises(HTTPClientError) as e:
            await create(jp_fetch, **body)
        assert e.value.code == 400
        assert expected in json.loads(e.value.response.body)["message"], body
    code, _ = await refused(
        jp_fetch, "tokens", "0123456789abcdef", method="DELETE", allow_nonstandard_methods=True
    )
    assert code == 404
    made = await create(jp_fetch)
    await call(jp_fetch, "tokens", made["id"], method="DELETE", allow_nonstandard_methods=True)
    code, message = await refused(
        jp_fetch, "tokens", made["id"], method="DELETE", allow_nonstandard_methods=True
    )
    assert code == 409 and "already revoked" in message
    for forged in ("jat_" + made["id"] + "_" + "A" * 43, "jat_nonsense"):
        code, message = await refused(jp_fetch, "me", token=forged)
        assert code == 401


async def test_cli_manages_tokens_through_the_live_server(
    jp_serverapp, jp_fetch, jp_http_port, jp_base_url, capsys
):
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
    admin = jp_serverapp.identity_provider.token
    args = ["--url", url, "--token", admin]
    create_args = ["token", "create", "--service-account", "nightly", "--owner", "ada@example.org"]
    code = await asyncio.to_thread(cli_main, [*create_args, "--expires", "7d", *args, "--json"])
    assert code == 0
    made = json.loads(capsys.readouterr().out)
    me = await call(jp_fetch, "me", token=made["token"])
    assert me["identity"]["username"] == "nightly"
    code = await asyncio.to_thread(cli_main, ["token", "list", *args])
    out = capsys.readouterr().out
    assert code == 0 and made["id"] in out and "active" in out and made["token"] not in out
    code = await asyncio.to_thread(cli_main, ["token", "revoke", made["id"], *args])
    assert code == 0
    # a service token cannot manage tokens
    code = await asyncio.to_thread(
        cli_main, ["token", "list", "--url", url, "--token", made["token"]]
    )
    assert code == 2
    assert "401" in capsys.readouterr().err


def test_cli_manages_tokens_on_a_stopped_trail(trail_dir):
    db = str(trail_dir / "trail.duckdb")
    code, out, err = run_cli("demo", "--db", db)
    assert code == 0, err
    code, out, err = run_cli(
        "token",
        "create",
        "--db",
        db,
        "--service-account",
        "etl",
        "--owner",
        "ada@example.org",
    )
    assert code == 0, err
    assert "shown only this once" in out
    token = out.strip().splitlines()[-1]
    token_id = token.split("_", 2)[1]
    code, out, err = run_cli("token", "list", "--db", db, "--json")
    rows = json.loads(out)["tokens"]
    assert code == 0 and rows[0]["id"] == token_id and "secret_hash" not in rows[0]
    code, out, err = run_cli("token", "revoke", token_id, "--db", db, "--reason", "rotated")
    assert code == 0, err
    code, out, err = run_cli("token", "revoke", token_id, "--db", db)
    assert code == 2 and "already revoked" in err
    code, out, err = run_cli(
        "token", "create", "--db", db, "--service-account", "x", "--owner", "a"
    )
    assert code == 2 and "email" in err
    code, out, err = run_cli("verify", "--db", db)
    assert code == 0, out + err
    code, out, err = run_cli("export", "--db", db, "-o", str(trail_dir / "out.jsonl"))
    records = [json.loads(x) for x in (trail_dir / "out.jsonl").read_text().splitlines()]
    created = next(r for r in records if r["kind"] == "token.created")
    assert created["payload"]["token_id"] == token_id
    assert created["identity"]["auth_method"] == "local"
    assert secret_of(token) not in (trail_dir / "out.jsonl").read_text()


def test_expired_token_is_refused(make_writer):
    from jupyter_audit.identity.tokens import TokenStore

    w = make_writer()
    store = TokenStore(w)
    admin = {"username": "admin", "auth_method": "local"}
    token, record = store.create("etl", "ada@example.org", "1h", admin)
    assert store.check(token)[0]["token_id"] == record["id"]
    store._rows[record["id"]]["expires_at"] = datetime.now(UTC) - timedelta(seconds=1)
    snapshot, why = store.check(token)
    assert snapshot is None and "expired" in why
    assert store.get(record["id"])["state"] == "expired"
    # a reopened store reads the same tokens from the trail
    assert TokenStore(w).get(record["id"])["service_account"] == "etl"


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE service_tokens SET revoked_at = NULL, revoked_by = NULL",  # revived
        "UPDATE service_tokens SET service_account = 'alice'",  # renamed to a person
        "UPDATE service_tokens SET expires_at = TIMESTAMP '2099-01-01'",  # extended
        # rekeyed (its first digit always changed: a hash starting with f made it a no-op)
        "UPDATE service_tokens SET secret_hash = "
        "CASE WHEN secret_hash[1] = 'f' THEN 'e' ELSE 'f' END || substr(secret_hash, 2)",
    ],
)
def test_a_token_edited_in_the_file_is_not_accepted_and_verify_says_so(
    make_writer, trail_dir, edit
):
    """Who may authenticate is decided on service_tokens: an edit made while the server was
    stopped (a revoked contractor's token revived, say) is checked against the signed
    token.created / token.revoked events."""
    import duckdb

    from jupyter_audit.identity.tokens import TokenStore

    w = make_writer()
    store = TokenStore(w)
    admin = {"username": "admin", "auth_method": "local"}
    token, record = store.create("etl", "ada@example.org", "1d", admin)
    if "revoked_at" in edit:
        store.revoke(record["id"], admin)
    w.close()
    con = duckdb.connect(str(trail_dir / "trail.duckdb"))
    con.execute(edit)
    con.close()
    code, out, err = run_cli("verify", "--db", str(trail_dir / "trail.duckdb"))
    assert code == 1 and "a service token differs from what the log says" in out, out + err
    reopened = TokenStore(make_writer())
    assert reopened.get(record["id"]) is None
    assert reopened.check(token)[0] is None


def test_a_service_account_cannot_take_a_persons_username(make_writer):
    from jupyter_audit.identity.tokens import TokenError, TokenStore

    w = make_writer()
    w.append(sql_event(1, who=ALICE))
    store = TokenStore(w)
    with pytest.raises(TokenError, match="a person's username"):
        store.create(
            "alice", "ada@example.org", "1d", {"username": "admin", "auth_method": "local"}
        )
    token, record = store.create("alice-etl", "ada@example.org", "1d", ALICE)
    assert record["owner_identity_id"] is None  # ada never acted here


async def test_a_revoked_token_runs_no_more_cells_on_a_socket_left_open(
    jp_serverapp, jp_fetch, jp_ws_fetch
):
    """The gateway resolves a socket's identity once, but checks its token at every cell:
    revoked behind the socket registry's back, the next cell is refused and not recorded."""
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    made = await create(jp_fetch)
    h = {"Authorization": f"token {made['token']}"}
    _kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch, headers=h)
    assert (await client.run("print(1)"))[0] == "ok"
    audit.token_sockets.clear()  # revocation will not close this socket: the gateway must
    admin = {"username": "admin", "auth_method": "token"}
    tokens = jp_serverapp.web_app.settings["jupyter_audit_tokens"]
    await asyncio.to_thread(tokens.revoke, made["id"], admin)
    client.send_execute("print(2)")

    async def closed():
        while await client.ws.read_message() is not None:
            pass

    await asyncio.wait_for(closed(), 10)
    assert client.ws.close_code == 4003
    cells = [e for e in trail_events(audit) if e["kind"] == "cell.requested"]
    assert [e["payload"]["code"] for e in cells] == ["print(1)"]


async def test_a_service_tokens_open_websocket_closes_when_the_token_expires(
    jp_serverapp, jp_fetch, jp_ws_fetch
):
    """Like a bearer token's: the socket is closed at the token's expiry with the reason, not
    left streaming the kernel's output until its holder next sends something."""
    from datetime import UTC, datetime, timedelta

    from jupyter_audit.server.sockets import TOKEN_EXPIRED

    # long enough for a kernel to start and run a cell on a busy machine
    expires = (datetime.now(UTC) + timedelta(seconds=20)).isoformat()
    made = await create(jp_fetch, expires=expires)
    h = {"Authorization": f"token {made['token']}"}
    _kernel_id, client = await open_kernel(jp_fetch, jp_ws_fetch, headers=h)
    assert (await client.run("print(1 + 1)"))[0] == "ok"

    async def drain():
        while await client.ws.read_message() is not None:
            pass

    await asyncio.wait_for(drain(), 60)
    assert (client.ws.close_code, client.ws.close_reason) == (4001, TOKEN_EXPIRED)
