"""`jupyter audit replay --url` goes through the REST API's authorization: a notebook user
cannot replay someone else's trace (403, nothing written); the person who ran it and an
auditor can, and the auditor's view is recorded. Real OIDC bearer tokens from an issuer over
HTTP (tests/helpers/oidc.KeyIssuer), a real server and kernel."""

import asyncio

import nbformat
import pytest
from helpers.kernels import open_kernel
from helpers.oidc import CLIENT, oidc_config
from helpers.servers import run_cli
from helpers.trail import wait_for

PEOPLE = {
    "alice": ["data-science"],
    "mallory": ["data-science"],
    "ada": ["audit-auditors"],
}


@pytest.fixture
def jp_server_config(trail_dir, issuer):
    return oidc_config(trail_dir, issuer.issuer)


def token(issuer, name: str) -> str:
    claims = issuer.claims(
        f"sub-{name}", CLIENT, preferred_username=name, email=f"{name}@example.org",
        groups=PEOPLE[name],
    )  # fmt: skip
    return issuer.mint(claims)


async def test_only_participants_and_auditors_replay_a_trace(
    jp_serverapp, jp_fetch, jp_ws_fetch, jp_http_port, jp_base_url, issuer, tmp_path
):
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
    alice = {"Authorization": f"Bearer {token(issuer, 'alice')}"}
    kid, client = await open_kernel(jp_fetch, jp_ws_fetch, headers=alice)
    status, _out = await client.run("total = 40 + 2")
    assert status == "ok"
    await wait_for(audit, lambda ev: any(e["kind"] == "cell.finished" for e in ev))

    async def replay(name: str, out):
        bearer = f"Bearer {token(issuer, name)}"
        return await asyncio.to_thread(
            run_cli, "replay", kid, "--url", url, "--token", bearer, "-o", str(out)
        )

    theirs = tmp_path / "mallory.ipynb"
    code, out, err = await replay("mallory", theirs)
    assert code == 2 and "server answered 403" in err and not theirs.exists()

    for name in ("alice", "ada"):
        mine = tmp_path / f"{name}.ipynb"
        code, out, err = await replay(name, mine)
        assert code == 0, err
        nb = nbformat.read(str(mine), as_version=4)
        assert [c.source for c in nb.cells if c.cell_type == "code"] == ["total = 40 + 2"]
        [note] = [
            c.source for c in nb.cells if c.metadata.get("jupyter_audit", {}).get("annotates_run")
        ]
        assert "**Who:** **alice**" in note

    events = await wait_for(
        audit,
        lambda ev: any(
            e["kind"] == "trail.accessed" and e["identity"]["username"] == "ada" for e in ev
        ),
    )
    viewed = [e for e in events if e["kind"] == "trail.accessed"]
    assert {e["identity"]["username"] for e in viewed} == {"ada"}  # alice's own: not a view
    assert all(e["payload"]["trace_id"] == kid for e in viewed)
