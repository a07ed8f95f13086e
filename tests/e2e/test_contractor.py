"""The contractor story, end to end, against a real OIDC issuer, a real server and kernel, and
the real CLI as separate processes:

an admin creates a token for a contractor's service account; `jupyter audit run` executes a
notebook with cells and queries using it; the token is revoked; the next run is refused; the
trail still attributes every earlier step to the service account and its owner (also once
the issuer, the organisation's directory, is gone); `jupyter audit verify` passes."""

import asyncio
import json

import pytest
from helpers.notebooks import write_notebook
from helpers.oidc import CLIENT, oidc_config
from helpers.servers import run_cli


@pytest.fixture
def jp_server_config(trail_dir, issuer):
    return oidc_config(trail_dir, issuer.issuer)


async def cli(*args):
    return await asyncio.to_thread(run_cli, *args)


JOB = [
    "import sqlite3\ncon = sqlite3.connect('scores.db')\n"
    "con.execute('CREATE TABLE IF NOT EXISTS scores (id INTEGER, email TEXT, score REAL)')\n"
    "con.execute(\"INSERT INTO scores VALUES (1, 'jane.doe@example.com', 0.91)\")\n"
    "con.commit()",
    "rows = con.execute('SELECT id, score FROM scores WHERE score > ?', (0.5,)).fetchall()\n"
    "print('approved', len(rows))",
]


async def test_contractor_story(
    jp_serverapp, jp_fetch, jp_http_port, jp_base_url, issuer, tmp_path
):
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    admin = "Bearer " + issuer.mint(
        issuer.claims(
            "ada-sub",
            CLIENT,
            preferred_username="ada",
            email="ada@example.org",
            groups=["audit-admins", "audit-auditors"],
        ),
    )
    owner = "Bearer " + issuer.mint(
        issuer.claims("carol-sub", CLIENT, preferred_username="carol", email="carol@example.org")
    )
    # the owner has worked here herself (signed in, ran something): her identity is on record
    write_notebook(tmp_path / "hello.ipynb", "print('hi')")
    code, out, err = await cli("run", str(tmp_path / "hello.ipynb"), "--url", url, "--token", owner)
    assert code == 0, err

    # 1. an admin creates a token for the contractor's service account, owned by carol
    code, out, err = await cli(
        "token", "create", "--service-account", "contractor-etl", "--owner", "carol@example.org",
        "--expires", "30d", "--url", url, "--token", admin, "--json",
    )  # fmt: skip
    assert code == 0, err
    made = json.loads(out)
    token, token_id = made["token"], made["id"]

    # 2. the job runs with it, through the server
    write_notebook(tmp_path / "scoring.ipynb", *JOB)
    out_nb = tmp_path / "scoring.out.ipynb"
    code, out, err = await cli(
        "run", str(tmp_path / "scoring.ipynb"), "--url", url, "--token", token, "-o", str(out_nb)
    )
    assert code == 0, err
    assert "approved 1" in out_nb.read_text()
    trace_id = json.loads(out_nb.read_text())["metadata"]["jupyter_audit"]["run"]["trace_id"]

    # 3. the token is revoked; 4. the next run is refused and records nothing under it
    code, out, err = await cli("token", "revoke", token_id, "--url", url, "--token", admin)
    assert code == 0, err
    audit.cell_requests.flush()
    audit.writer.flush()
    before = audit.writer.cursor().execute("SELECT count(*) FROM events").fetchone()[0]
    code, out, err = await cli(
        "run", str(tmp_path / "scoring.ipynb"), "--url", url, "--token", token, "-o", str(out_nb)
    )
    assert code == 2 and "refused the token" in err and token not in err + out
    audit.cell_requests.flush()
    audit.writer.flush()
    after = (
        audit.writer.cursor()
        .execute("SELECT kind FROM events WHERE seq > ? ORDER BY seq", [before])
        .fetchall()
    )
    assert {k for (k,) in after} <= {
        "security.rejected",
        "checkpoint",
    }  # (the writer signs one a minute)

    # 5. the organisation's directory is gone (the owner left): the trail still says it all
    issuer.stop()
    export = tmp_path / "contractor.jsonl"
    code, out, err = await cli(
        "export", "--url", url, "--token", admin, "--trace", trace_id, "-o", str(export)
    )
    assert code == 0, err
    records = [json.loads(line) for line in export.read_text().splitlines()]
    steps = [r for r in records if r["kind"].startswith(("cell.", "op."))]
    assert {"cell.requested", "op.sql"} <= {r["kind"] for r in steps}
    for r in steps:
        ident = r["identity"]
        assert (ident["username"], ident["auth_method"]) == ("contractor-etl", "service_token")
        assert (ident["token_id"], ident["token_owner"]) == (token_id, "carol@example.org")
    sql = [r["payload"]["statement"] for r in records if r["kind"] == "op.sql"]
    assert any(s.startswith("SELECT id, score") for s in sql)
    assert "jane.doe@example.com" not in export.read_text()  # masked
    code, out, err = await cli("verify", "--bundle", str(export))
    assert code == 0, out + err

    # the owner's own identity at the time is linked from token.created, by hash
    cur = audit.writer.cursor()
    (created,) = cur.execute(
        "SELECT record FROM events WHERE kind = 'token.created' ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    owner_id = json.loads(created)["payload"]["owner_identity_id"]
    (snap,) = cur.execute(
        "SELECT snapshot FROM identities WHERE identity_id = ?", [owner_id]
    ).fetchone()
    snap = json.loads(snap)
    assert (snap["username"], snap["subject"], snap["issuer"]) == (
        "carol",
        "carol-sub",
        issuer.issuer,
    )
    code, out, err = await cli("show", trace_id, "--url", url, "--token", admin)
    assert code == 0 and "contractor-etl" in out, err
    code, out, err = await cli("verify", "--url", url, "--token", admin)
    assert code == 0, out + err
