"""binder/ (repo2docker cannot run here): its requirements install for real, from PyPI, into
a fresh virtual environment; its postBuild passes there; and its start script, run as
repo2docker runs it before a Binder-like server (a token login under a hub-like prefix),
brings the demo up behind that server's jupyter-server-proxy with the demo sign-in page.

One test, once per run: it installs everything for real (prints how long that took: 216 s
here with a warm pip cache, ~5 min for the whole test on 2 busy cores; most of it is pip
installing jupyterlab and its dependencies twice, for the build and for the venv)."""

import asyncio
import http.cookiejar
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import venv

import pytest
from helpers.servers import REPO, free_port
from helpers.venvs import clean_env

BINDER = REPO / "binder"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _call(opener, url, form=None, *, json_body=None, headers=None):
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers = {**(headers or {}), "Content-Type": "application/json"}
    try:
        with opener.open(urllib.request.Request(url, data, headers or {}), timeout=60) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()
    except (urllib.error.URLError, OSError) as e:
        return 0, {}, str(e)


def test_binder_files_are_there():
    for name in ("requirements.txt", "postBuild", "start"):
        assert (BINDER / name).is_file(), name
    for name in ("postBuild", "start"):
        assert os.access(BINDER / name, os.X_OK), f"binder/{name} is not executable"
    assert 'exec "$@"' in (BINDER / "start").read_text()  # repo2docker's contract


@pytest.mark.timeout(1800)
def test_binder_installs_into_a_fresh_venv_and_starts_the_demo_behind_the_proxy(tmp_path):
    env_dir, home = tmp_path / "venv", tmp_path / "home"
    home.mkdir()
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    bindir = env_dir / "bin"
    env = clean_env(bindir, home, reuse_pip_cache=True)
    began = time.monotonic()
    subprocess.run(  # as repo2docker does: from the repository's root
        [
            str(bindir / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "-r",
            str(BINDER / "requirements.txt"),
        ],
        cwd=REPO,
        env=env,
        check=True,
        timeout=1500,
    )
    print(f"binder/requirements.txt installed in {time.monotonic() - began:.0f} s")
    subprocess.run([str(BINDER / "postBuild")], cwd=REPO, env=env, check=True, timeout=300)
    start_the_demo_as_binder_does(bindir, home, env)


def start_the_demo_as_binder_does(bindir, home, env) -> None:
    """binder/start before a Binder-like server; the demo's sign-in through its proxy."""
    port, demo_port, token = free_port(), free_port(), "binder-visitor-token"
    prefix = "/user/visitor/"
    if shutil.which("jupyter", path=env["PATH"]) != str(bindir / "jupyter"):
        pytest.fail("the venv's jupyter is not first on PATH")
    server = subprocess.Popen(
        [
            str(BINDER / "start"),
            str(bindir / "jupyter"),
            "server",
            f"--port={port}",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.base_url={prefix}",
            f"--IdentityProvider.token={token}",
            "--no-browser",
            "--allow-root",
        ],  # fmt: skip
        cwd=home,
        env={
            **env,
            "JUPYTERHUB_SERVICE_PREFIX": prefix,
            "JUPYTERHUB_API_TOKEN": "the-hub-token-of-binder-s-server",
            "JUPYTER_AUDIT_DEMO_PORT": str(demo_port),
            "JUPYTER_AUDIT_DEMO_ARGS": "--allow-root",  # the tests run as root; Binder does not
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    demo = f"http://127.0.0.1:{port}{prefix}proxy/absolute/{demo_port}"
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect)
    try:
        # the visitor's Binder link carries the server's token once; then its cookie
        deadline, page = time.monotonic() + 600, ""
        while time.monotonic() < deadline:
            status, _, page = _call(browser, f"{demo}/login?token={token}")
            if status == 200 and "DEMO SIGN-IN" in page:
                break
            assert server.poll() is None, "the Binder-like server exited"
            time.sleep(1)
        assert "DEMO SIGN-IN" in page, page[:500]
        # a stranger without the Binder server's credentials never reaches the demo
        status, _, _ = _call(urllib.request.build_opener(_NoRedirect), f"{demo}/login")
        assert status in (302, 401, 403)

        # the form's own XSRF token (the browser may hold Binder's server's _xsrf cookie too)
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page).group(1)
        status, headers, body = _call(
            browser, f"{demo}/login", {"sub": "dana", "_xsrf": xsrf, "next": f"{prefix}x"}
        )
        assert status == 302, body[:300]
        status, _, body = _call(browser, f"{demo}/jupyter-audit/api/me")
        assert status == 200, body[:300]
        assert json.loads(body)["username"] == "dana"
        # she runs a cell in the demo's kernel, over the proxied websocket, with her cookie
        session = {"path": "reasoning_chain.ipynb", "type": "notebook", "name": "x"}
        status, _, body = _call(
            browser,
            f"{demo}/api/sessions",
            json_body={**session, "kernel": {"name": "python3"}},
            headers={"X-XSRFToken": xsrf},
        )
        assert status == 201, body[:300]
        kernel_id = json.loads(body)["kernel"]["id"]
        cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
        ws_url = f"{demo}/api/kernels/{kernel_id}/channels".replace("http://", "ws://")
        origin = f"http://127.0.0.1:{port}"
        assert asyncio.run(_run_cell(ws_url, cookie, origin, "print(6 * 7)")) == "42\n"
        # the demo's kernels never see the Binder server's Hub token
        code = "import os; print(sorted(k for k in os.environ if k.startswith('JUPYTERHUB')))"
        assert asyncio.run(_run_cell(ws_url, cookie, origin, code)) == "[]\n"
        # the contractor's story ran at start (its trace is in the trail)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if "revoked" in (home / "audit-demo.log").read_text():
                break
            time.sleep(1)
        assert "now revoked" in (home / "audit-demo.log").read_text()
    finally:
        # the container stops: Binder's server and, in its process group, the demo
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        _wait_for_line(home / "audit-demo.log", "stopped.")
    log = (home / "audit-demo.log").read_text()
    assert "The trail verifies" in log, log[-2000:]


async def _run_cell(ws_url: str, cookie: str, origin: str, code: str) -> str:
    """The stdout of `code` run over a kernel websocket, as a browser would send it."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    request = HTTPRequest(ws_url, headers={"Cookie": cookie, "Origin": origin})
    ws = await asyncio.wait_for(websocket_connect(request), 60)
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "msg_type": "execute_request", "session": uuid.uuid4().hex}
    content = {"code": code, "silent": False, "store_history": True, "user_expressions": {}}
    ws.write_message(
        json.dumps(
            {
                "channel": "shell",
                "header": {**header, "username": "", "version": "5.3"},
                "parent_header": {},
                "metadata": {},
                "content": {**content, "allow_stdin": False},
                "buffers": [],
            }
        )
    )
    try:
        while True:
            raw = await asyncio.wait_for(ws.read_message(), 60)
            assert raw is not None, "the kernel websocket closed"
            msg = json.loads(raw)
            if msg.get("msg_type") == "stream" and msg["parent_header"].get("msg_id") == msg_id:
                return msg["content"]["text"]
    finally:
        ws.close()


def _wait_for_line(path, text, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and text not in path.read_text():
        time.sleep(0.5)
