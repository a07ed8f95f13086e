"""The live demo (`jupyter audit demo`, jupyter_audit/demo/), end to end with its real parts:
the oidc-provider-mock process with the demo users, the API stub, JupyterLab with
jupyter-audit as a process, real kernels, `jupyter audit run` as a process, the REST API as
each person, and the trail file read afterwards.

- the whole story headless: the contractor's job under a service token that is then revoked,
  the data scientist's notebook whose DELETE waits until the reviewer approves it (neither
  she nor the auditor can), the trail verifying with the approval, the masking and the
  contractor (owner named) in it, and no fake e-mail or phone anywhere in the trail's files
  or the server's log;
- `jupyter audit demo` as a user starts it: it prints what to open, and Ctrl-C (SIGINT)
  stops the server, the provider and the stub and leaves a trail that verifies.
"""

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest
from helpers.servers import REPO, free_port, run_cli

from jupyter_audit.demo.data import fake_pii
from jupyter_audit.demo.people import ADMIN, DATA_SCIENTIST, REVIEWER
from jupyter_audit.demo.story import CONTRACTOR, analysis_story, contractor_story
from jupyter_audit.demo.world import DemoWorld

if importlib.util.find_spec("oidc_provider_mock") is None:  # the [demo] extra
    pytest.skip("oidc-provider-mock is not installed", allow_module_level=True)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def export(db, out) -> list[dict]:
    code, _out, err = run_cli("export", "--db", str(db), "-o", str(out))
    assert code == 0, err
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.timeout(900)
def test_the_demo_story_headless_leaves_a_verifying_trail(tmp_path):
    world = DemoWorld(tmp_path / "demo", allow_root=True)
    try:
        world.start()
        contractor = contractor_story(world)
        tokens = world.rest("tokens", world.bearer(ADMIN))["tokens"]
        analysis = analysis_story(world)
    finally:
        world.stop()
    assert not world.running() and not listening(world.port)

    # the reviewer's approval, and nobody else's
    assert analysis["statement"] == "DELETE FROM review_queue"
    assert analysis["refused"] == {"requester": 403, "auditor": 403}
    ran = analysis["output"].read_text()
    assert "removed 2 row(s) from the review queue" in ran
    assert "orders held for review" in ran  # the last cell ran too
    [token] = [t for t in tokens if t["id"] == contractor["token_id"]]
    assert (token["service_account"], token["state"]) == (CONTRACTOR, "revoked")

    code, out, err = run_cli("verify", "--db", str(world.db))
    assert code == 0, out + err
    records = export(world.db, tmp_path / "trail.jsonl")
    kinds = [r["kind"] for r in records]

    approvals = {r["kind"]: r for r in records if r["kind"].startswith("approval.")}
    assert set(approvals) == {"approval.requested", "approval.decided", "approval.executed"}
    assert approvals["approval.requested"]["identity"]["username"] == DATA_SCIENTIST.sub
    decided = approvals["approval.decided"]
    assert decided["identity"]["username"] == REVIEWER.sub
    assert (decided["payload"]["decision"], decided["payload"]["reviewer"]) == (
        "approve",
        REVIEWER.sub,
    )
    assert approvals["approval.executed"]["payload"]["rowcount"] == 2
    assert approvals["approval.requested"]["trace_id"] == analysis["trace_id"]

    # every step of the chain is in the data scientist's trace, linked to its cell
    mine = [r for r in records if r["trace_id"] == analysis["trace_id"]]
    ops = {r["kind"] for r in mine if r["kind"].startswith("op.")}
    assert ops == {"op.sql", "op.http", "op.shell"}
    cells = {r["msg_id"] for r in mine if r["kind"] == "cell.requested"}
    assert all(r["msg_id"] in cells for r in mine if r["kind"].startswith("op."))
    assert {r["identity"]["username"] for r in mine if r["kind"] == "cell.requested"} == {"dana"}
    shell = [r["payload"]["command"] for r in mine if r["kind"] == "op.shell"]
    assert shell == ["bash report.sh flagged.csv"]

    # the contractor: every step under the service account, its owner named, then revoked
    theirs = [r for r in records if r["trace_id"] == contractor["trace_id"]]
    steps = [r for r in theirs if r["kind"].startswith(("cell.", "op."))]
    assert {"cell.requested", "op.sql", "op.http"} <= {r["kind"] for r in steps}
    for r in steps:
        ident = r["identity"]
        assert (ident["username"], ident["auth_method"]) == (CONTRACTOR, "service_token")
        assert (ident["token_id"], ident["token_owner"]) == (
            contractor["token_id"],
            DATA_SCIENTIST.email,
        )
    [revoked] = [r for r in records if r["kind"] == "token.revoked"]
    assert revoked["payload"]["token_id"] == contractor["token_id"]
    assert revoked["identity"]["username"] == ADMIN.sub
    assert kinds.index("token.revoked") > kinds.index("session.ended")

    # masked: pseudonyms in the trail, the fake names, e-mails and phones nowhere in its files
    text = (tmp_path / "trail.jsonl").read_text()
    assert "‹EMAIL:" in text and "‹PHONE:" in text and "‹NAME:" in text
    files = [*world.db.parent.iterdir(), world.log_path]
    for path in files:
        data = path.read_bytes()
        for value in fake_pii():
            assert value.encode() not in data, f"{value} unmasked in {path.name}"
            assert value not in text
    assert "security.rejected" not in kinds  # nothing of other servers' leaked in


def _read_until(proc, marker: str) -> str:
    """The demo's console up to the line holding `marker` (or its end)."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            break
    return "".join(seen)


@pytest.mark.timeout(600)
def test_jupyter_audit_demo_stops_cleanly_on_ctrl_c(tmp_path):
    port = free_port()
    where = tmp_path / "demo"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_audit.cli",
            "demo",
            "--dir",
            str(where),
            "--port",
            str(port),
            "--allow-root",
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"},
    )
    try:
        console = _read_until(proc, "Press Ctrl-C")
        assert "Press Ctrl-C" in console, console
        url = f"http://127.0.0.1:{port}/lab/tree/reasoning_chain.ipynb"
        assert url in console
        for user in ("dana", "rui", "aki", "sam"):
            assert f"    {user} " in console
        issuer = console.split("The demo identity provider is ", 1)[1].split(";", 1)[0]
        # a visitor is sent to sign in, and signs in as dana at the demo provider's page
        browser = _Browser()
        status, headers, _ = browser.call(url)
        assert status == 302 and "/login" in headers["Location"]
        status, headers, _ = browser.call(urllib.parse.urljoin(url, headers["Location"]))
        assert status == 302 and headers["Location"].startswith(issuer + "/")
        authorize = headers["Location"]
        status, _, page = browser.call(authorize)
        assert status == 200 and all(f'value="{u}"' in page for u in ("dana", "rui", "aki"))
        status, headers, _ = browser.call(authorize, {"sub": "dana"})
        assert status in (302, 303) and "/oidc/callback" in headers["Location"]
        status, headers, body = browser.call(headers["Location"])
        assert status == 302 and headers["Location"].endswith("/lab/tree/reasoning_chain.ipynb")
        status, _, body = browser.call(f"http://127.0.0.1:{port}/jupyter-audit/api/me")
        assert status == 200 and json.loads(body)["username"] == "dana", body
        status, _, body = browser.call(
            f"http://127.0.0.1:{port}/api/contents/reasoning_chain.ipynb"
        )
        assert status == 200 and "DELETE FROM review_queue" in body
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest
    assert "stopped. The trail verifies" in rest
    assert not listening(port)  # the server is gone
    with pytest.raises(urllib.error.URLError):  # and the provider
        urllib.request.urlopen(issuer + "/.well-known/openid-configuration", timeout=5)
    code, out, err = run_cli("verify", "--db", str(where / "audit" / "trail.duckdb"))
    assert code == 0, out + err


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_a_demo_directory_that_is_not_empty_is_refused(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    if os.geteuid() == 0:  # Jupyter's own rule, said before anything starts
        code, _out, err = run_cli("demo", "--dir", str(tmp_path / "new"))
        assert code == 2 and "--allow-root" in err
    code, _out, err = run_cli("demo", "--dir", str(tmp_path), "--allow-root")
    assert code == 2 and "is not empty" in err
    code, _out, err = run_cli("demo", "--dir", str(tmp_path / "new"), "--port", "70000")
    assert code == 2 and "a port is 1 to 65535" in err
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


class _Browser:
    """Just enough of a browser: cookies kept, redirects not followed."""

    def __init__(self):
        import http.cookiejar

        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect
        )

    def call(self, url, form=None, headers=None):
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(
                urllib.request.Request(url, data, headers or {}), timeout=60
            ) as r:
                return r.status, r.headers, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode()

    def cookie(self, name):
        return next((c.value for c in self.jar if c.name == name), None)


@pytest.mark.timeout(600)
def test_the_demo_sign_in_page_for_binder(tmp_path):
    """`--binder`: the demo's own sign-in page under a proxy's prefix; it signs people in
    through the provider's real ID tokens, only as a demo user, only with the form's XSRF
    token, never redirects off the server, and signing out ends the session."""
    world = DemoWorld(tmp_path / "demo", allow_root=True, sign_in_page=True, base_url="/u/x/d/")
    try:
        world.start()
        base = world.url  # http://127.0.0.1:PORT/u/x/d
        browser = _Browser()
        status, headers, _ = browser.call(f"{base}/lab")
        assert status == 302 and headers["Location"].startswith("/u/x/d/login")
        evil = '"><script>alert(1)</script>'
        status, _, page = browser.call(f"{base}/login?next=" + urllib.parse.quote(evil))
        assert status == 200 and "DEMO SIGN-IN" in page
        assert "<script>alert" not in page
        assert 'name="next" value="/u/x/d/"' in page  # not a path on this server: home
        for user in ("dana", "rui", "aki", "sam"):
            assert f'value="{user}"' in page
        xsrf = browser.cookie("_xsrf")
        assert xsrf

        # no XSRF token: refused (another site's page cannot sign a visitor in as someone)
        status, _, _ = browser.call(f"{base}/login", {"sub": "rui", "next": "/u/x/d/lab"})
        assert status == 403
        # not a demo user
        status, _, body = browser.call(f"{base}/login", {"sub": "root", "_xsrf": xsrf})
        assert status == 400 and "demo users" in body
        # off-server next: back home instead
        status, headers, _ = browser.call(
            f"{base}/login", {"sub": "rui", "_xsrf": xsrf, "next": "https://evil.example/"}
        )
        assert status == 302 and headers["Location"] == "/u/x/d/"
        status, _, body = browser.call(f"{base}/jupyter-audit/api/me")
        me = json.loads(body)
        assert status == 200 and me["username"] == "rui" and "reviewer" in me["roles"]
        assert me["identity"]["issuer"] == world.provider.issuer  # its real ID token

        status, headers, _ = browser.call(f"{base}/logout")
        assert status == 302 and headers["Location"] == "/u/x/d/login"
        status, _, _ = browser.call(f"{base}/jupyter-audit/api/me")
        assert status in (401, 403)
    finally:
        world.stop()
    code, out, err = run_cli("verify", "--db", str(world.db))
    assert code == 0, out + err
